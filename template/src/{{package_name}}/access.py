"""One record per answered request: its Prometheus samples and its JSON log line."""

import functools
import logging

from . import metrics

_log = logging.getLogger("access")
# Label values come from closed sets: a client inventing methods must not mint series.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def record(route: str, method: str, path: str, status: int, seconds: float) -> None:
    """`route` is the matched pattern (bounded label values); `path` is what was asked."""
    requests, latency = _series(route, method if method in _METHODS else "other", status)
    requests.inc()
    latency.observe(seconds)
    fields = {"method": method, "path": path, "status": status, "duration_ms": seconds * 1000}
    _log.info("%s %s %d", method, path, status, extra={"fields": fields})


@functools.cache  # as bounded as the labels; `labels()` locks and builds a key each call
def _series(route: str, method: str, status: int) -> tuple:
    return metrics.REQUESTS.labels(route, method, str(status)), metrics.LATENCY.labels(route)
