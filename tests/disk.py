"""Free disk where a run writes, watched from start to end.

A cold run of the whole matrix leaves its images, build cache, base-image tarballs and
renders on the machine; where the disk fills, every test after that point errors with
ENOSPC and the real cause scrolls away. So the builds do not start where the images still
to build cannot fit, and the summary gives the least free space seen, which tells how
close a run came.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path

GB = 1e9
# Below this a cold full run cannot fit: the images it keeps for the next run take 49.4 GB
# (the summary's docker line), its build cache is bounded to 5 GB at the end. Where the
# disk allows, BuildKit lets its cache grow on the way: with 79.7 GB free the run used up
# to 65.3 GB (2026-12-07, the summary's disk line).
FULL_RUN_NEEDS_GB = 55
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


def too_little_for(to_build: int, planned: int) -> str | None:
    """Why the disk cannot hold `to_build` more of a full run's `planned` images, or None:
    said before the first build, not at the ENOSPC that would fail every test after it."""
    need = FULL_RUN_NEEDS_GB * GB * to_build / planned
    short = {p: left for p in filesystems().values() if (left := free(p)) < need}
    if not short:
        return None
    where = ", ".join(f"{p} has {left / GB:.1f} GB free" for p, left in short.items())
    return (
        f"disk: {where}; {to_build} of the {planned} planned contexts have no image yet, and "
        f"building them needs about {need / GB:.0f} GB (a cold full run, with its build cache "
        f"and base images, at least {FULL_RUN_NEEDS_GB} GB). Free some space (docker system "
        "prune -a; docker builder prune -a) or run a part of the suite (-k, or a stage's file)."
    )
