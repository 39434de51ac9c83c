"""The Docker side of the suite: engine, base images, wheel index, build contexts and builds."""

import hashlib
import importlib.util
import os
import re
import subprocess
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from docker.utils.build import exclude_paths

from combinations import Combination
from index_cache import IndexCache

INFRA = Path(__file__).resolve().parent / "infra"
IMAGE_PREFIX = "ml-docker-template-test"


def sh(*command, timeout: float = 60, check: bool = True) -> str:
    result = subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode:
        raise RuntimeError(f"{' '.join(map(str, command))} failed:\n{result.stderr[-3000:]}")
    return result.stdout


@dataclass
class DockerHost:
    """What this machine offers for builds; reports every stand-in and substitution."""

    python_versions: list[str]
    started_engine: bool = False
    base_images: dict[str, str] = field(default_factory=dict)  # version -> real|stand-in|missing
    notes: list[str] = field(default_factory=list)
    wheel_index: str | None = None
    torch_cpu_pythons: set[str] = field(default_factory=set)
    _index_server: subprocess.Popen | None = None
    index_cache: IndexCache | None = None

    def start(self) -> None:
        engine = sh("bash", INFRA / "docker-engine.sh", "start", timeout=600)
        self.notes.append(engine.strip())
        self.started_engine = "started dockerd" in engine
        lines = sh("bash", INFRA / "base-images.sh", *self.python_versions, timeout=1800)
        for line in lines.splitlines():
            _, image, kind, detail = line.split(" ", 3)
            self.base_images[image.removeprefix("python:").removesuffix("-slim")] = kind
            if kind != "real":
                self.notes.append(f"{image}: {kind}: {detail}")
        self._serve_local_wheels()
        self.index_cache = IndexCache()
        self.notes.append(f"PyPI's index pages cached for this run at {self.index_cache.url}")

    def _serve_local_wheels(self) -> None:
        """PyTorch's CPU index is out of reach here; pip's local wheel folder stands in."""
        spec = importlib.util.spec_from_file_location("wheel_index", INFRA / "wheel-index.py")
        wheel_index = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(wheel_index)
        wheels = [w.name for d in wheel_index.pip_find_links() for w in Path(d).glob("torch-*")]
        self.torch_cpu_pythons = {
            f"{m[1]}.{m[2]}" for w in wheels if (m := re.search(r"\+cpu-cp(\d)(\d+)-", w))
        }
        if self.torch_cpu_pythons:
            self.wheel_index, self._index_server = wheel_index.serve()
            self.notes.append(
                f"PyTorch CPU wheels from a local index {self.wheel_index} "
                f"(Pythons {sorted(self.torch_cpu_pythons)})"
            )

    @property
    def build_options(self) -> list[str]:
        """For every docker build: PyPI's index through this run's cache (tests/index_cache.py),
        and a layer cache that outlives the run where ML_DOCKER_TEMPLATE_BUILD_CACHE names
        one (BuildKit's --cache-to syntax; CI gives each shard its own in GitHub's cache)."""
        options = ["--secret", f"id=pip.conf,src={self.index_cache.pip_conf}"]
        if cache := os.environ.get("ML_DOCKER_TEMPLATE_BUILD_CACHE"):
            options += ["--cache-from", cache, "--cache-to", f"{cache},mode=max,ignore-error=true"]
        return options

    def stop(self) -> None:
        if self.index_cache:
            self.index_cache.stop()
        if self._index_server:
            self._index_server.terminate()
            self._index_server.wait(timeout=10)
        if self.started_engine:
            sh("bash", INFRA / "docker-engine.sh", "stop", timeout=120)

    def built_as(self, c: Combination) -> tuple[Combination, str | None]:
        """The combination whose render this machine builds for c, and why if it is another.

        A lock is made for its Python version: a Python 3.13 lock may pin releases that no
        longer install on 3.11. Where this machine has no PyTorch CPU wheel for c's Python,
        the render for a Python it has one for is built instead, with that version's locks.
        """
        if c.ml_framework == "pytorch" and not c.gpu and self.wheel_index:
            if c.python_version not in self.torch_cpu_pythons:
                python = min(self.torch_cpu_pythons)
                why = f"no PyTorch CPU wheel for Python {c.python_version} here"
                return replace(c, python_version=python), f"built as the py{python} render: {why}"
        return c, None

    def build_args(self, c: Combination) -> tuple[dict[str, str], str | None]:
        """Build arguments for this machine, and why they differ from the defaults if they do."""
        python, why = c.python_version, None
        if self.base_images.get(python) == "missing":
            python = next(v for v in self.python_versions if self.base_images[v] != "missing")
            why = f"no python:{c.python_version}-slim base here"
        args = {"PYTHON_IMAGE": f"python:{python}-slim"} if python != c.python_version else {}
        if c.ml_framework == "pytorch" and not c.gpu and self.wheel_index:
            args["TORCH_INDEX_URL"] = self.wheel_index
        return args, why and f"built against python:{python}-slim: {why}"


def context_files(project: Path) -> dict[str, bytes]:
    """What `docker build` sees: the Dockerfile and the context after .dockerignore."""
    ignore = (project / ".dockerignore").read_text().splitlines()
    patterns = [p.strip() for p in ignore if p.strip() and not p.startswith("#")]
    names = sorted(exclude_paths(str(project), patterns))
    files = {name: (project / name).read_bytes() for name in names if (project / name).is_file()}
    return {**files, "Dockerfile": (project / "Dockerfile").read_bytes()}


def context_digest(project: Path, build_args: dict[str, str]) -> str:
    """Digest of the build context, the Dockerfile and the build arguments."""
    files, digest = context_files(project), hashlib.sha256()
    dockerfile = files.pop("Dockerfile")
    for name, content in sorted(files.items()):
        digest.update(name.encode() + b"\0" + content + b"\0")
    digest.update(dockerfile)
    digest.update(repr(sorted(build_args.items())).encode())
    return digest.hexdigest()


def build(project: Path, build_args: dict[str, str], log: Path, *options: str) -> float:
    """docker build with `options` (a tag, a target); raises with the log's tail if it fails."""
    arguments = [arg for k, v in build_args.items() for arg in ("--build-arg", f"{k}={v}")]
    command = ["docker", "build", "--progress", "plain", "--network", "host", *options]
    started = time.monotonic()
    with log.open("w") as out:
        result = subprocess.run(
            [*command, *arguments, "."],
            cwd=project,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=3600,
        )
    if result.returncode:
        raise AssertionError(f"docker build failed; log {log}:\n{log.read_text()[-4000:]}")
    return time.monotonic() - started
