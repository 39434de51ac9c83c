"""A static HTTPS server with its own CA (trustme), a bearer token on /private/."""

import sys
import tarfile
from pathlib import Path

import trustme

from .process import ServerProcess, free_port

SCRIPT = Path(__file__).with_name("https_server.py")


class HttpsServer(ServerProcess):
    def __init__(
        self, root: Path, token: str, port: int | None = None, cut: str | None = None
    ) -> None:
        port = port or free_port()
        self.root, self.token, self.url = root, token, f"https://127.0.0.1:{port}"
        (root / "www").mkdir(parents=True, exist_ok=True)
        ca = trustme.CA()
        certificate = ca.issue_cert("127.0.0.1", "localhost")
        self.ca_file = root / "ca.pem"
        ca.cert_pem.write_to_path(self.ca_file)
        certificate.private_key_and_cert_chain_pem.write_to_path(root / "server.pem")
        self.token_file = root / "token"
        self.token_file.write_text(token + "\n")
        command = [sys.executable, SCRIPT, root / "www", port, root / "server.pem",
                   root / "server.pem", token, *([cut] if cut else [])]  # fmt: skip
        super().__init__("https", command, port, ready=lambda: True)

    def publish_archive(self, model_dir: Path, path: str, top_folder: str | None) -> str:
        """`tar -czf` of the model directory, with or without one top-level folder."""
        archive = self.root / "www" / path
        archive.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(model_dir, arcname=top_folder or ".")
        return f"{self.url}/{path}"

    def publish_files(self, model_dir: Path, folder: str) -> Path:
        """The model directory's files as they are, under /folder/."""
        target = self.root / "www" / folder
        target.mkdir(parents=True, exist_ok=True)
        for path in model_dir.iterdir():
            (target / path.name).write_bytes(path.read_bytes())
        return target
