"""A real OCI registry on loopback: Debian's docker-registry (distribution 2.8), filesystem storage.

Docker pushes to and pulls from 127.0.0.0/8 over plain HTTP without any set-up.
"""

import contextlib
import json
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import requests

from .process import ServerProcess, free_port

INFRA = Path(__file__).resolve().parents[1] / "infra"
MANIFEST_TYPES = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])  # fmt: skip


class OciRegistry:
    def __init__(self, root: Path) -> None:
        binary = subprocess.run(
            ["bash", INFRA / "oci-registry.sh"], capture_output=True, text=True, check=True
        ).stdout.strip()
        port = free_port()
        self.host = f"127.0.0.1:{port}"
        (root / "storage").mkdir(parents=True, exist_ok=True)
        config = root / "config.yml"
        storage = {"filesystem": {"rootdirectory": str(root / "storage")}}
        http = {"addr": self.host, "secret": secrets.token_hex(16)}
        settings = {"version": 0.1, "log": {"level": "warn"}, "storage": storage, "http": http}
        config.write_text(json.dumps(settings))  # JSON is YAML
        self._server = ServerProcess("oci-registry", [binary, "serve", config], port, self._up)

    def _up(self) -> bool:
        with contextlib.suppress(requests.RequestException):
            return requests.get(f"http://{self.host}/v2/", timeout=2).status_code == 200
        return False

    def digest_of(self, repository: str, reference: str) -> str:
        """The manifest digest the registry serves for a tag or digest."""
        response = requests.head(
            f"http://{self.host}/v2/{repository}/manifests/{reference}",
            headers={"Accept": MANIFEST_TYPES}, timeout=10,
        )  # fmt: skip
        response.raise_for_status()
        return response.headers["Docker-Content-Digest"]

    def tags(self, repository: str) -> set[str]:
        response = requests.get(f"http://{self.host}/v2/{repository}/tags/list", timeout=10)
        response.raise_for_status()
        return set(response.json()["tags"] or ())

    @contextlib.contextmanager
    def running(self) -> Iterator["OciRegistry"]:
        self._server.start()
        try:
            yield self
        finally:
            self._server.stop()
