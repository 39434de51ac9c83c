"""One record per answered request: its Prometheus samples and its JSON log line."""

import logging

from . import metrics

_log = logging.getLogger("access")
# Label values come from closed sets: a client inventing methods must not mint series.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def record(route: str, method: str, path: str, status: int, seconds: float) -> None:
    """`route` is the matched pattern (bounded label values); `path` is what was asked."""
    label = method if method in _METHODS else "other"
    metrics.REQUESTS.labels(route, label, str(status)).inc()
    metrics.LATENCY.labels(route).observe(seconds)
    fields = {"method": method, "path": path, "status": status, "duration_ms": seconds * 1000}
    _log.info("%s %s %d", method, path, status, extra={"fields": fields})
