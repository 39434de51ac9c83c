"""The one error shape every endpoint answers with."""


class RequestError(Exception):
    """A refused request: the service stays healthy and says why, in JSON.

    4xx: the request was wrong. 503: the service is busy or not ready; `retry_after`
    (seconds) becomes the Retry-After header. 500: the service failed this request.
    """

    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}
