"""PyPI's simple index, cached on 127.0.0.1 for the builds of one run.

pip asks the index for each locked package's page before it takes the wheel from its own
cache: about fifty round trips to PyPI per install step, and most of a serving layer's
build time. Each page is fetched once a run here; the wheels' addresses in it are PyPI's,
so pip's cache mount still serves the files. Builds reach it the way a team reaches a
private mirror: the generated Dockerfile's `pip.conf` secret (`docker build --secret
id=pip.conf,src=FILE`), which the image never keeps.

Like a mirror that holds only what its organisation allows, a page lists only the files
whose SHA-256 a lock the template ships names: pip reads every file of a page before it
checks hashes, and PyPI's pages for pydantic-core, numpy or botocore list thousands (2-7
MB of JSON each), which each install step parsed again (a FastAPI web stack collected in
0.6 s instead of 1.0 s). A lock naming a file the page lacks fails its build, as it would
at such a mirror.
"""

from __future__ import annotations

import json
import re
import tempfile
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

UPSTREAM = "https://pypi.org"
LOCKS = Path(__file__).resolve().parent.parent / "includes" / "locks"
PEP_691_JSON = "application/vnd.pypi.simple.v1+json"


def locked_hashes(locks: Path = LOCKS) -> frozenset[str]:
    """Every SHA-256 the template's locks name."""
    return frozenset(
        digest
        for lock in locks.rglob("*.lock")
        for digest in re.findall(r"--hash=sha256:([0-9a-f]{64})", lock.read_text())
    )


def only_locked_files(body: bytes, hashes: frozenset[str]) -> bytes:
    """A PEP 691 JSON page with only the files whose SHA-256 is in `hashes`."""
    page = json.loads(body)
    page["files"] = [f for f in page["files"] if f.get("hashes", {}).get("sha256") in hashes]
    return json.dumps(page).encode()


class _Handler(BaseHTTPRequestHandler):
    pages: dict[tuple[str, str], tuple[int, str, bytes]] = {}
    lock = threading.Lock()
    hashes: frozenset[str] = frozenset()

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if not self.path.startswith("/simple/"):
            self.send_error(404)
            return
        key = (self.path, self.headers.get("Accept", ""))
        with self.lock:
            page = self.pages.get(key)
        if page is None:
            page = self._fetch(*key)
            if page[0] in (200, 404):  # an answer, not a failure to get one
                with self.lock:
                    self.pages[key] = page
        status, content_type, body = page
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    @staticmethod
    def _fetch(path: str, accept: str) -> tuple[int, str, bytes]:
        request = urllib.request.Request(UPSTREAM + path, headers={"Accept": accept or "*/*"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                content_type, body = response.headers["Content-Type"], response.read()
                if content_type.startswith(PEP_691_JSON):
                    body = only_locked_files(body, _Handler.hashes)
                return response.status, content_type, body
        except urllib.error.HTTPError as error:
            return error.code, "text/plain", error.reason.encode()
        except OSError as error:
            return 502, "text/plain", f"PyPI unreachable: {error}".encode()

    def log_message(self, *args) -> None:  # pip's own log says what it fetched
        pass


class IndexCache:
    """The cache's server in a thread of this process; `pip_conf` is the file to mount."""

    def __init__(self) -> None:
        _Handler.hashes = locked_hashes()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}/simple/"
        self._work = tempfile.TemporaryDirectory(prefix="index-cache-")
        self.pip_conf = Path(self._work.name) / "pip.conf"
        # cert: the stand-in base images' own pip.conf, which this one is mounted over.
        self.pip_conf.write_text(
            f"[global]\nindex-url = {self.url}\ncert = /etc/ssl/certs/ca-certificates.crt\n"
        )
        threading.Thread(target=self._server.serve_forever, name="index-cache", daemon=True).start()

    @property
    def pages(self) -> int:
        return len(_Handler.pages)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._work.cleanup()
