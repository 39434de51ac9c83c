"""One record per answered request: its Prometheus samples and its JSON log line."""

import logging

from . import metrics

_log = logging.getLogger("access")


def record(route: str, method: str, path: str, status: int, seconds: float) -> None:
    """`route` is the matched pattern (bounded label values); `path` is what was asked."""
    metrics.REQUESTS.labels(route, method, str(status)).inc()
    metrics.LATENCY.labels(route).observe(seconds)
    fields = {"method": method, "path": path, "status": status, "duration_ms": seconds * 1000}
    _log.info("%s %s %d", method, path, status, extra={"fields": fields})
