"""A stand-in for https://download.pytorch.org/whl/cpu/torch/ on 127.0.0.1.

The real page is out of this machine's reach. The stand-in lists the same wheel names with
the SHA-256 digests that page publishes for torch 2.13.0 (TORCH_CPU_WHEELS below), so a lock
made against it names exactly the hashes pip checks against the real files. Only one of the
wheels is on this disk (pip's find-links folder): its digest is recomputed and must match the
published one, and its bytes answer every wheel's byte-range requests, which is all a resolver
reads of a wheel (its METADATA): the published wheels of one release carry the same metadata.
"""

from __future__ import annotations

import hashlib
import html
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# As https://download.pytorch.org/whl/cpu/torch/ lists them for 2.13.0, Linux only (the images
# are Linux; macOS and Windows wheels are left out of the locks on purpose).
TORCH_CPU_WHEELS = """\
84453b69508ec79902f899c5ed9495acb9e2bbe9fda5f1d5d6f19e3c3842e1a7  torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_aarch64.whl
6746dbcbeb526eb61330b76b41ff1b4eb848951103a892eeb080dfa2b264667b  torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl
6f307c2c32d764ffc6ff6893b801fad6d4752f3e67966cb8abf1843427c02604  torch-2.13.0+cpu-cp312-cp312-manylinux_2_28_aarch64.whl
4ca4a9394b0c771238a4f73590fdbbc4debad85ed0fa63d026ae1b085da7d6e2  torch-2.13.0+cpu-cp312-cp312-manylinux_2_28_x86_64.whl
0b8f7d0423027ae8b90c7977c627f3379f325363a08224dffad9b4b2d684a83d  torch-2.13.0+cpu-cp313-cp313-manylinux_2_28_aarch64.whl
3fbf9c9d1f3c10c2d59d04aca426dee9ccc6ceb32d255c61e93acc3b4f75fae6  torch-2.13.0+cpu-cp313-cp313-manylinux_2_28_x86_64.whl
ca021f9eb2f8345c83fa03e3a04587308afb8df71bd472670b3ece00df58621c  torch-2.13.0+cpu-cp314-cp314-manylinux_2_28_aarch64.whl
d20fa53ee744502fa4c69818a720b05ca0d37abd055d4f6e66cae155114bc691  torch-2.13.0+cpu-cp314-cp314-manylinux_2_28_x86_64.whl
"""  # noqa: E501
REAL_INDEX = "https://download.pytorch.org/whl/cpu"


def published() -> dict[str, str]:
    lines = TORCH_CPU_WHEELS.splitlines()
    return {name: digest for digest, name in (line.split("  ") for line in lines)}


def local_wheel(folder: Path = Path("/opt/wheels")) -> Path:
    """The one published wheel on this disk, checked against the published digest."""
    digests = published()
    for wheel in sorted(folder.glob("torch-*+cpu-*.whl")):
        if wheel.name in digests:
            actual = hashlib.sha256(wheel.read_bytes()).hexdigest()
            if actual != digests[wheel.name]:
                published_digest = digests[wheel.name]
                raise SystemExit(
                    f"{wheel}: sha256 {actual}, the index publishes {published_digest}"
                )
            return wheel
    raise SystemExit(f"no published torch CPU wheel in {folder}")


def serve(wheel: Path) -> tuple[str, ThreadingHTTPServer]:
    """Start the stand-in; returns its page's URL and the server (call .shutdown())."""
    data = wheel.read_bytes()
    page = "\n".join(
        f'<a href="{html.escape(name)}#sha256={digest}">{html.escape(name)}</a><br>'
        for name, digest in published().items()
    ).encode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def do_HEAD(self):
            self.do_GET(body=False)

        def do_GET(self, body: bool = True):
            name = self.path.rsplit("/", 1)[-1]
            if self.path.rstrip("/").endswith("/torch"):
                self._send(200, page, "text/html", body)
            elif name in published():
                self._send_range(body)
            else:
                self._send(404, b"not found", "text/plain", body)

        def _send_range(self, body: bool):
            found = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
            if not found:
                self._send(200, data, "application/octet-stream", body)
                return
            first, last = found.groups()
            if first == "":  # a suffix: the last N bytes
                first, last = len(data) - int(last), len(data) - 1
            else:
                first, last = int(first), min(int(last or len(data) - 1), len(data) - 1)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {first}-{last}/{len(data)}")
            self._send_headers(last - first + 1, "application/octet-stream")
            if body:
                self.wfile.write(data[first : last + 1])

        def _send(self, status: int, payload: bytes, kind: str, body: bool):
            self.send_response(status)
            self._send_headers(len(payload), kind)
            if body:
                self.wfile.write(payload)

        def _send_headers(self, length: int, kind: str):
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(length))
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/whl/cpu/torch/", server
