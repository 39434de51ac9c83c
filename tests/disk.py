"""Free disk where a run writes, watched from start to end.

A cold run of the whole matrix leaves its images, build cache, base-image tarballs and
renders on the machine; where the disk fills, every test after that point errors with
ENOSPC and the real cause scrolls away. So the run says up front when a full run cannot
fit, and its summary gives the least free space seen, which tells how close it came.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path

GB = 1e9
# What a cold full run consumed on this project's CI machine kind (the summary's "used"
# line is how this is kept honest), with some room for the files a run grows over time.
FULL_RUN_NEEDS_GB = 60
# Where the run writes: renders and logs, Docker's data root, the engine's and base
# images' caches.
WRITTEN = (
    Path(tempfile.gettempdir()),
    Path("/var/lib/docker"),
    Path(os.environ.get("ML_DOCKER_TEMPLATE_CACHE", "/var/cache/ml-docker-template")),
)


def _existing(path: Path) -> Path:
    while not path.exists():
        path = path.parent
    return path


def filesystems(paths=WRITTEN) -> dict[int, Path]:
    """One path per filesystem among `paths` (they are often all on one)."""
    found: dict[int, Path] = {}
    for path in map(_existing, paths):
        found.setdefault(path.stat().st_dev, path)
    return found


def free(path: Path) -> int:
    return shutil.disk_usage(path).free


class DiskWatch:
    """The least free space on each filesystem the run writes, sampled until stop()."""

    def __init__(self, every_s: float = 5.0) -> None:
        self.paths = list(filesystems().values())
        self.at_start = {p: free(p) for p in self.paths}
        self.least = dict(self.at_start)
        self._every = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="disk-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self._sample()

    def _sample(self) -> None:
        for p in self.paths:
            self.least[p] = min(self.least[p], free(p))

    def too_little_for_a_full_run(self) -> str | None:
        """Why a full run cannot fit here, or None."""
        short = [p for p in self.paths if self.at_start[p] < FULL_RUN_NEEDS_GB * GB]
        if not short:
            return None
        where = ", ".join(f"{p} has {self.at_start[p] / GB:.1f} GB free" for p in short)
        return (
            f"disk: {where}; a cold run of the whole matrix needs about {FULL_RUN_NEEDS_GB} GB "
            "(images, build cache, base images, renders). Free some space (docker system "
            "prune -a; docker builder prune -a) or run a part of the suite (-k, or a stage's "
            "file)."
        )

    def stop(self) -> list[str]:
        """Lines for the summary: free space at start, least seen, and what the run used."""
        self._stop.set()
        self._thread.join()
        self._sample()
        return [
            f"{p}: {self.at_start[p] / GB:.1f} GB free at start, least {self.least[p] / GB:.1f} GB,"
            f" {free(p) / GB:.1f} GB at the end; the run used up to "
            f"{(self.at_start[p] - self.least[p]) / GB:.1f} GB"
            for p in self.paths
        ]
