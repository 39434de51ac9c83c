"""Running a built image as production does: read-only, as its user, reachable on loopback only."""

import contextlib
import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

from docker_host import sh
from servers.process import free_port


@dataclass
class Service:
    container_id: str
    url: str

    def logs(self) -> str:
        result = subprocess.run(
            ["docker", "logs", self.container_id], capture_output=True, text=True
        )
        return result.stdout + result.stderr  # the service logs to stderr

    def pid(self) -> int:
        """The host's process id of the container's first process (gunicorn's master)."""
        return int(sh("docker", "inspect", "--format", "{{.State.Pid}}", self.container_id))

    def log_lines(self) -> list[dict]:
        """The service's log, every line of which must be one JSON object."""
        lines = []
        for line in self.logs().splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                raise AssertionError(f"a log line that is not JSON: {line!r}") from None
        return lines

    def readyz(self) -> requests.Response | None:
        with contextlib.suppress(requests.ConnectionError, requests.Timeout):
            return requests.get(f"{self.url}/readyz", timeout=2)
        return None

    def wait_ready(self, seconds: float = 180) -> float:
        """Seconds until /readyz answered 200; fails at once if the container exits."""
        started = time.monotonic()
        while time.monotonic() < started + seconds:
            response = self.readyz()
            if response is not None and response.status_code == 200:
                return time.monotonic() - started
            if response is not None and "still loading" not in response.text:
                raise AssertionError(f"gave up loading: {response.text}\n{self.logs()}")
            state = sh("docker", "inspect", "--format", "{{.State.Status}}", self.container_id)
            assert state.strip() == "running", self.logs()
            time.sleep(0.2)
        raise AssertionError(f"not ready in {seconds}s:\n{self.logs()}")

    def wait_unready(self, seconds: float = 60) -> dict:
        """The 503 error /readyz settles on once loading has given up (no longer "loading")."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            response = self.readyz()
            if response is not None:
                assert response.status_code == 503, response.text
                error = response.json()["error"]
                if "still loading" not in error["message"]:
                    return error
            time.sleep(0.2)
        raise AssertionError(f"still loading after {seconds}s:\n{self.logs()}")

    def stop(self, grace: int) -> tuple[float, int]:
        """docker stop (SIGTERM, then SIGKILL after `grace`): seconds taken and exit code."""
        started = time.monotonic()
        sh("docker", "stop", "--time", grace, self.container_id, timeout=grace + 30)
        exit_code = sh("docker", "inspect", "--format", "{{.State.ExitCode}}", self.container_id)
        return time.monotonic() - started, int(exit_code)

    def predict(self, rows: list, timeout: float = 30) -> requests.Response:
        return requests.post(f"{self.url}/predict", json={"instances": rows}, timeout=timeout)

    def thread_cpus(self) -> list[set[int]]:
        """The CPUs each thread of the workers (not gunicorn's master) may run on, as the
        kernel has them."""
        lists = sh("docker", "exec", self.container_id, "python", "-c", _THREAD_CPUS).split()
        return [{cpu for part in cpus.split(",") for cpu in _cpu_range(part)} for cpus in lists]


# Printed by the container's own Python: each worker thread's Cpus_allowed_list.
_THREAD_CPUS = """
import os, pathlib
for task in pathlib.Path("/proc").glob("[0-9]*/task/*"):
    if task.parent.parent.name not in ("1", str(os.getpid())):  # a worker's, not gunicorn's
        status = dict(line.split(":\\t", 1) for line in (task / "status").read_text().splitlines())
        print(status["Cpus_allowed_list"].strip())
"""


def _cpu_range(part: str) -> range:
    """'0-3' or '2' of a CPU list."""
    first, _, last = part.partition("-")
    return range(int(first), int(last or first) + 1)


def read_only(path: Path, target: str) -> str:
    """A `--mount` of a host file or folder, read-only in the container."""
    return f"type=bind,src={path},dst={target},readonly"


@contextlib.contextmanager
def serving(
    image: str, *, wait: bool = True, host_network: bool = False, mounts: tuple[str, ...] = (),
    cpus: float | None = None, memory: str | None = None, **env: str,
) -> Iterator[Service]:  # fmt: skip
    """Run the image hardened as in production; removed by id afterwards.

    Published on a loopback port, or with `host_network` on the host's network (to
    reach servers on 127.0.0.1) with PORT set to a free port. `mounts` are
    `--mount` specifications (the model cache, secret files); `cpus` is a CPU limit,
    `memory` a memory limit (`768m`).
    """
    if host_network:
        env = {"PORT": str(free_port()), **env}
        network = ["--network", "host"]
    else:
        network = ["--publish", "127.0.0.1::8000"]
    options = [arg for key, value in env.items() for arg in ("--env", f"{key}={value}")]
    options += [arg for mount in mounts for arg in ("--mount", mount)]
    options += ["--cpus", str(cpus)] if cpus else []
    options += ["--memory", memory] if memory else []
    container_id = sh(
        "docker", "run", "--detach", "--read-only", "--tmpfs", "/tmp", *network, *options, image,
    ).strip()  # fmt: skip
    try:
        if host_network:
            port = env["PORT"]
        else:
            port = sh("docker", "port", container_id, "8000/tcp").split(":")[-1].strip()
        service = Service(container_id, f"http://127.0.0.1:{port}")
        if wait:
            service.wait_ready()
        yield service
    finally:
        sh("docker", "rm", "--force", "--volumes", container_id, check=False)


def metric(page: str, name: str, absent: float | None = None) -> float:
    """A sample's value from a /metrics page; `absent` if given stands for a missing one."""
    lines = [line for line in page.splitlines() if line.startswith(name + " ")]
    if not lines and absent is not None:
        return absent
    (line,) = lines
    return float(line.split()[1])
