"""A loopback HTTP proxy that drops one download mid-body, as a node's network blip does.

Clients are pointed at it instead of the server (an endpoint or tracking URI). The first
response to a GET whose request line holds `cut` stops after its headers and half its
body, and that connection closes; every other exchange passes untouched, so a client
that retries gets the whole file. `fetches` counts the GETs it saw for `cut`.
"""

import contextlib
import re
import socket
import threading

CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)
# Enough of the previous chunk to find a request line that straddles two reads.
TAIL = 4096


class CuttingProxy:
    def __init__(self, upstream_port: int, cut: str) -> None:
        self._upstream = ("127.0.0.1", upstream_port)
        self._cut = re.compile(rb"(?:^|\r\n)GET [^\r\n]*" + re.escape(cut.encode()))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.fetches = 0
        self.cuts = 0
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> "CuttingProxy":
        self._spawn(self._accept)
        return self

    def __exit__(self, *exc) -> None:
        self._listener.close()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout=5)

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed by __exit__
                return
            upstream = socket.create_connection(self._upstream)
            with self._lock:
                self._open.update((client, upstream))
            cutting = threading.Event()
            self._spawn(self._requests, client, upstream, cutting)
            self._spawn(self._responses, upstream, client, cutting)

    def _requests(self, client: socket.socket, upstream: socket.socket, cutting) -> None:
        tail = b""
        while data := _recv(client):
            window = tail + data
            # A match that ends in the tail was counted on the read before: not again.
            for _ in (m for m in self._cut.finditer(window) if m.end() > len(tail)):
                with self._lock:
                    self.fetches += 1
                    if self.cuts == 0:
                        self.cuts = 1
                        cutting.set()  # before the server can answer: it has not the request yet
            tail = window[-TAIL:]
            if not _send(upstream, data):
                break
        _close(upstream, client)

    def _responses(self, upstream: socket.socket, client: socket.socket, cutting) -> None:
        buffered = b""
        while data := _recv(upstream):
            if not cutting.is_set():
                if not _send(client, data):
                    break
                continue
            buffered += data
            head_end = buffered.find(b"\r\n\r\n")
            if head_end < 0:
                continue
            head, body = buffered[: head_end + 4], buffered[head_end + 4 :]
            length = CONTENT_LENGTH.search(head)
            keep = int(length[1]) // 2 if length else 16
            while len(body) < keep and (more := _recv(upstream)):
                body += more
            _send(client, head + body[:keep])
            break  # the blip: the rest of the body never arrives
        _close(upstream, client)


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(1 << 16)
    except OSError:
        return b""


def _send(sock: socket.socket, data: bytes) -> bool:
    try:
        sock.sendall(data)
    except OSError:
        return False
    return True


def _close(*sockets: socket.socket) -> None:
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
