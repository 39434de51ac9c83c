"""The CPU and memory this container may use: what worker and thread counts default to."""

import math
import os
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")
# What a cgroup file may give instead of a number: no such file, or not the format expected.
UNREADABLE = (OSError, ValueError)


def cpu_limit(cgroup: Path = CGROUP) -> float:
    """CPUs' worth of time the container may use: its cgroup quota (Kubernetes'
    `limits.cpu`, `docker run --cpus`) when it has one, else the CPUs it may run on.
    The node's core count says nothing about either."""
    quota = cpu_quota(cgroup)
    return quota if quota is not None else float(len(os.sched_getaffinity(0)))


def cpu_quota(cgroup: Path = CGROUP) -> float | None:
    """The container's cgroup CPU quota in CPUs, or None when it has none."""
    try:  # cgroup v2: "QUOTA PERIOD", or "max PERIOD" for no quota
        quota, period = (cgroup / "cpu.max").read_text().split()
        return int(quota) / int(period) if quota != "max" else None
    except UNREADABLE:
        try:  # cgroup v1: a quota of -1 means none
            quota = int((cgroup / "cpu" / "cpu.cfs_quota_us").read_text())
            period = int((cgroup / "cpu" / "cpu.cfs_period_us").read_text())
            return quota / period if quota > 0 else None
        except UNREADABLE:
            return None


def memory_limit(cgroup: Path = CGROUP) -> int | None:
    """Bytes the container may use (Kubernetes' `limits.memory`, `docker run --memory`),
    or None when it has no limit."""
    try:  # cgroup v2: bytes, or "max"
        limit = (cgroup / "memory.max").read_text().strip()
        return None if limit == "max" else int(limit)
    except UNREADABLE:
        try:  # cgroup v1: no limit reads as a huge number
            limit = int((cgroup / "memory" / "memory.limit_in_bytes").read_text())
            return limit if limit < 1 << 60 else None
        except UNREADABLE:
            return None


# Workers a default gives however many CPUs the node has: with no CPU limit (many
# clusters forbid them) a worker per core of a 96-core node would load 96 models.
MAX_DEFAULT_WORKERS = 8


def default_workers(cpus: float, memory: int | None, worker_memory: int) -> int:
    """One worker per whole CPU (each holds its own copy of the model), no more than the
    memory limit holds at `worker_memory` bytes each, nor MAX_DEFAULT_WORKERS; at least one."""
    fit = memory // worker_memory if memory is not None else MAX_DEFAULT_WORKERS
    return max(1, min(math.floor(cpus), fit, MAX_DEFAULT_WORKERS))


def default_model_threads(cpus: float, workers: int) -> int:
    """The CPUs left to each worker's model calls, so workers do not fight over cores."""
    return max(1, math.floor(cpus / workers))
