"""Readiness across gunicorn's workers: a pod is ready once every worker has its model.

Any worker may answer the readiness probe; were "ready" only its own state, traffic
would reach the pod while other workers still load and answer 503. Each worker that
has loaded the model leaves a file named by its pid in WORKERS_READY_DIR, which
gunicorn_conf.py sets, empties at start, and clears of each worker that exits.
"""

import os
from pathlib import Path


def _folder() -> Path | None:
    folder = os.environ.get("WORKERS_READY_DIR")
    return Path(folder) if folder else None


def mark_ready() -> None:
    if (folder := _folder()) is not None:
        (folder / str(os.getpid())).touch()


def forget(pid: int) -> None:
    if (folder := _folder()) is not None:
        (folder / str(pid)).unlink(missing_ok=True)


def still_loading(expected: int) -> int:
    """How many of the `expected` workers have not loaded the model yet: 0 outside gunicorn."""
    if (folder := _folder()) is None:
        return 0
    return max(0, expected - sum(1 for _ in folder.iterdir()))
