"""The servers' processes: started, measured (their process tree's RSS) and stopped by id."""

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from .config import STOP_TIMEOUT_S, WORK, sh


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def start_time(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def cpu_probe_ms() -> float:
    """A fixed pure-Python loop: shows how fast this (virtual) CPU is right now."""
    started, total = time.perf_counter(), 0
    for i in range(2_000_000):
        total += i
    return (time.perf_counter() - started) * 1000


def tree_cpu_seconds(root: int) -> float:
    """User and system CPU time the process tree has used, from /proc."""
    ticks = 0
    for pid in process_tree(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_rss_bytes(root: int) -> int:
    """Sum of VmRSS over the process tree (shared pages count once per process)."""
    total = 0
    for pid in process_tree(root):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


class Container:
    """A generated image, run with --network host; stopped by its container id."""

    def __init__(self, name: str, image: str, port: int, workers: int, env: list) -> None:
        self.name = name
        settings = [f"PORT={port}", f"WORKERS={workers}", *env]
        run = ["docker", "run", "-d", "--network", "host", "--name", f"bench-{name}-{os.getpid()}"]
        env = [x for setting in settings for x in ("-e", setting)]
        self.cid = sh(*run, *env, image).stdout.strip()

    def root_pid(self) -> int:  # the container's PID 1 (gunicorn's master) as the host sees it
        return int(sh("docker", "inspect", "-f", "{{.State.Pid}}", self.cid).stdout)

    def alive(self) -> bool:
        state = sh("docker", "inspect", "-f", "{{.State.Running}}", self.cid).stdout
        return state.strip() == "true"

    def stop(self) -> None:
        subprocess.run(["docker", "stop", "-t", str(STOP_TIMEOUT_S), self.cid], capture_output=True)
        with (WORK / f"server-{self.name}.log").open("w") as out:
            subprocess.run(["docker", "logs", self.cid], stdout=out, stderr=subprocess.STDOUT)
        subprocess.run(["docker", "rm", "-f", self.cid], capture_output=True)


class Process:
    """An anchor's CLI in its own session; stopped by pid (SIGTERM, then SIGKILL leftovers)."""

    def __init__(self, name: str, command: list, env: dict, cwd: Path) -> None:
        self.log = (WORK / f"server-{name}.log").open("w")
        self.proc = subprocess.Popen(
            command,
            env={**os.environ, **env},
            cwd=cwd,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def root_pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        children = [(pid, start_time(pid)) for pid in process_tree(self.proc.pid)[1:]]
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid, started in children:  # workers that outlived their parent (same pid, same start)
            if started is not None and start_time(pid) == started:
                os.kill(pid, signal.SIGKILL)
        self.log.close()


class RssSampler:
    """Peak summed RSS of a server's process tree, sampled every 0.5 s while in use."""

    def __init__(self, server) -> None:
        self.root, self.peak = server.root_pid(), 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            self.peak = max(self.peak, tree_rss_bytes(self.root))

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
