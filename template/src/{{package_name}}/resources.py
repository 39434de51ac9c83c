"""The CPU this container may use: what worker and thread counts default to."""

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
    try:  # cgroup v2: "QUOTA PERIOD", or "max PERIOD" for no quota
        quota, period = (cgroup / "cpu.max").read_text().split()
        if quota != "max":
            return int(quota) / int(period)
    except UNREADABLE:
        try:  # cgroup v1: a quota of -1 means none
            quota = int((cgroup / "cpu" / "cpu.cfs_quota_us").read_text())
            period = int((cgroup / "cpu" / "cpu.cfs_period_us").read_text())
            if quota > 0:
                return quota / period
        except UNREADABLE:
            pass
    return float(len(os.sched_getaffinity(0)))


def default_workers(cpus: float) -> int:
    """One worker per whole CPU: each holds its own copy of the model."""
    return max(1, math.floor(cpus))


def default_model_threads(cpus: float, workers: int) -> int:
    """The CPUs left to each worker's model calls, so workers do not fight over cores."""
    return max(1, math.floor(cpus / workers))
