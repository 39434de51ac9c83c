"""PyPI's simple index, cached on 127.0.0.1 for the builds of one run.

pip asks the index for each locked package's page before it takes the wheel from its own
cache: about fifty round trips to PyPI per install step, and most of a serving layer's
build time. Each page is fetched once a run here; the wheels' addresses in it are PyPI's,
so pip's cache mount still serves the files. Builds reach it the way a team reaches a
private mirror: the generated Dockerfile's `pip.conf` secret (`docker build --secret
id=pip.conf,src=FILE`), which the image never keeps.
"""

from __future__ import annotations

import tempfile
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

UPSTREAM = "https://pypi.org"


class _Handler(BaseHTTPRequestHandler):
    pages: dict[tuple[str, str], tuple[int, str, bytes]] = {}
    lock = threading.Lock()

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
                return response.status, response.headers["Content-Type"], response.read()
        except urllib.error.HTTPError as error:
            return error.code, "text/plain", error.reason.encode()
        except OSError as error:
            return 502, "text/plain", f"PyPI unreachable: {error}".encode()

    def log_message(self, *args) -> None:  # pip's own log says what it fetched
        pass


class IndexCache:
    """The cache's server in a thread of this process; `pip_conf` is the file to mount."""

    def __init__(self) -> None:
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
