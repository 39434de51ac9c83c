"""A static HTTPS file server: `python https_server.py ROOT PORT CERT KEY [TOKEN [CUT]]`.

Serves ROOT on 127.0.0.1:PORT over TLS. With TOKEN, paths under /private/ need
`Authorization: Bearer TOKEN` (401 without one, 403 with another). With CUT, the first
GET of a path ending in CUT drops its connection after half the body, as a blip does.
"""

import functools
import http.server
import ssl
import sys


class Handler(http.server.SimpleHTTPRequestHandler):
    token: str | None = None
    cut: str | None = None

    def do_GET(self) -> None:
        if self.token and self.path.startswith("/private/"):
            given = self.headers.get("Authorization")
            if given != f"Bearer {self.token}":
                self.send_error(401 if given is None else 403)
                return
        if self.cut and self.path.endswith(self.cut):
            Handler.cut = None  # once
            if body := self.send_head():  # the headers, with the whole file's Content-Length
                with body:
                    whole = body.read()
                self.wfile.write(whole[: len(whole) // 2])
            self.close_connection = True  # no TLS close_notify: the body just stops
            return
        super().do_GET()


def main(
    root: str, port: str, cert: str, key: str, token: str | None = None, cut: str | None = None
) -> None:
    Handler.token, Handler.cut = token, cut
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", int(port)), functools.partial(Handler, directory=root)
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    main(*sys.argv[1:])
