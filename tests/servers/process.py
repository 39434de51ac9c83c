"""A server process on a loopback port: started, probed until it answers, stopped by pid."""

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

LOG_DIR = Path(__file__).resolve().parents[2] / "build" / "test-report" / "servers"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


class ServerProcess:
    """`command` serving on 127.0.0.1:`port`; `ready()` says when it answers requests."""

    def __init__(self, name: str, command: list[str], port: int, ready: Callable[[], bool]):
        self.name, self.command, self.port, self._ready = name, command, port, ready
        self.log = LOG_DIR / f"{name}.log"
        self._process: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        with self.log.open("a") as log:
            # Its own session: stopping it stops the workers it forks too.
            self._process = subprocess.Popen(
                [str(part) for part in self.command], stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not (answers(self.port) and self._ready()):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = self.log.read_text()[-3000:]
                raise RuntimeError(f"{self.name} did not start on port {self.port}:\n{tail}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self._process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGTERM)
        try:
            self._process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()
        self._process = None
        deadline = time.monotonic() + 10
        while answers(self.port) and time.monotonic() < deadline:
            time.sleep(0.1)

    def __enter__(self) -> "ServerProcess":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
