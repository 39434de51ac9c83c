"""A GCS API: gcp-storage-emulator, in memory; clients find it through STORAGE_EMULATOR_HOST."""

import sys
from pathlib import Path

from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from .process import ServerProcess, free_port

BIN = Path(sys.executable).parent


class GcsServer(ServerProcess):
    def __init__(self, port: int | None = None) -> None:
        port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{port}"
        command = [BIN / "gcp-storage-emulator", "start", "-H", "127.0.0.1", "--port", port,
                   "--in-memory"]  # fmt: skip
        super().__init__("gcs", command, port, ready=lambda: True)

    def client(self, endpoint: str | None = None) -> storage.Client:
        return storage.Client(
            project="test", credentials=AnonymousCredentials(),
            client_options={"api_endpoint": endpoint or self.endpoint},
        )  # fmt: skip

    def publish(
        self, model_dir: Path, bucket: str, prefix: str, folder_marker: bool = True,
        via: str | None = None,
    ) -> str:  # fmt: skip
        """Upload `model_dir` under gs://bucket/prefix/, with the console's folder object.

        The emulator links each object's media to the host it was uploaded through: `via`
        (a proxy's URL) is where clients will download it from.
        """
        client = self.client(via)
        target = client.lookup_bucket(bucket) or client.create_bucket(bucket)
        if folder_marker:
            target.blob(f"{prefix}/").upload_from_string(b"")
        for path in sorted(model_dir.rglob("*")):
            if path.is_file():
                target.blob(f"{prefix}/{path.relative_to(model_dir)}").upload_from_filename(path)
        return f"gs://{bucket}/{prefix}"

    def client_env(self) -> dict[str, str]:
        return {"STORAGE_EMULATOR_HOST": self.endpoint}
