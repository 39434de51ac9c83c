"""A static HTTPS file server: `python https_server.py ROOT PORT CERT KEY [TOKEN]`.

Serves ROOT on 127.0.0.1:PORT over TLS. With TOKEN, paths under /private/ need
`Authorization: Bearer TOKEN` (401 without one, 403 with another).
"""

import functools
import http.server
import ssl
import sys


class Handler(http.server.SimpleHTTPRequestHandler):
    token: str | None = None

    def do_GET(self) -> None:
        if self.token and self.path.startswith("/private/"):
            given = self.headers.get("Authorization")
            if given != f"Bearer {self.token}":
                self.send_error(401 if given is None else 403)
                return
        super().do_GET()


def main(root: str, port: str, cert: str, key: str, token: str | None = None) -> None:
    Handler.token = token
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", int(port)), functools.partial(Handler, directory=root)
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    main(*sys.argv[1:])
