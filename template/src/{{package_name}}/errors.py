"""The one error shape every endpoint answers with."""


class RequestError(Exception):
    """A client error: the request is refused and the service stays healthy."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}
