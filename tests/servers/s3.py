"""An S3 API: moto's server, in memory. Any access key works; a bucket must exist."""

import sys
from pathlib import Path

import boto3

from .process import ServerProcess, free_port

BIN = Path(sys.executable).parent
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret"}


class S3Server(ServerProcess):
    def __init__(self, port: int | None = None) -> None:
        port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{port}"
        command = [BIN / "moto_server", "-H", "127.0.0.1", "-p", port]
        super().__init__("s3", command, port, ready=lambda: True)

    def client(self):
        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1",
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )  # fmt: skip

    def publish(self, model_dir: Path, bucket: str, prefix: str, folder_marker: bool = True) -> str:
        """Upload `model_dir` under s3://bucket/prefix/, with the console's folder object."""
        s3 = self.client()
        if bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
            s3.create_bucket(Bucket=bucket)
        if folder_marker:
            s3.put_object(Bucket=bucket, Key=f"{prefix}/", Body=b"")
        for path in sorted(model_dir.rglob("*")):
            if path.is_file():
                s3.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(model_dir)}")
        return f"s3://{bucket}/{prefix}"

    def client_env(self) -> dict[str, str]:
        """What a container (on the host network) needs to reach this store."""
        return {**CREDENTIALS, "AWS_ENDPOINT_URL_S3": self.endpoint, "AWS_REGION": "us-east-1"}
