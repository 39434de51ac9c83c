"""The Docker side of the suite: engine, base images, wheel index, builds and containers."""

import hashlib
import importlib.util
import os
import re
import subprocess
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from docker.utils.build import exclude_paths

from combinations import Combination

INFRA = Path(__file__).resolve().parent / "infra"
IMAGE_PREFIX = "ml-docker-template-test"
# A cold full run leaves about 15 GB of build cache; older renders' cache beyond that goes.
CACHE_KEEP = "20GB"


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

    def stop(self) -> None:
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


def context_digest(project: Path, build_args: dict[str, str]) -> str:
    """Digest of what `docker build` sees: the context after .dockerignore, plus the args."""
    ignore = (project / ".dockerignore").read_text().splitlines()
    patterns = [p.strip() for p in ignore if p.strip() and not p.startswith("#")]
    digest = hashlib.sha256()
    for name in sorted(exclude_paths(str(project), patterns)):
        path = project / name
        if path.is_file():
            digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update((project / "Dockerfile").read_bytes())
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


class Builds:
    """One docker build per distinct build context; every combination maps to one.

    Answers that change nothing in the context (the container registry, say, whose
    files .dockerignore keeps out) give the same image: the digest proves it.
    """

    def __init__(self, host: DockerHost, render, log_dir: Path, say) -> None:
        self.host, self._render, self._log_dir, self._say = host, render, log_dir, say
        self.keys: dict[str, str] = {}
        self.members: dict[str, list[Combination]] = {}
        self.built: dict[str, Combination] = {}  # the combination each context renders
        self.notes: dict[str, str] = {}
        self.args: dict[str, dict[str, str]] = {}
        self.seconds: dict[str, float] = {}
        self.test_seconds: dict[str, float] = {}
        self._failures: dict[str, str] = {}
        self._tests: dict[str, Future] = {}
        self._pool: ThreadPoolExecutor | None = None

    def plan(self, combinations: list[Combination]) -> None:
        for c in combinations:
            built, instead = self.host.built_as(c)
            args, note = self.host.build_args(built)
            key = context_digest(self._render(built), args)[:16]
            self.keys[c.id] = key
            self.members.setdefault(key, []).append(c)
            self.built[key] = built
            self.args[key] = args
            if instead or note:
                self.notes[c.id] = "; ".join(filter(None, [instead, note]))

    def image(self, c: Combination) -> str:
        key = self.keys[c.id]
        tag = f"{IMAGE_PREFIX}:{key}"
        if key in self._failures:
            raise AssertionError(f"same context as a failed build: {self._failures[key]}")
        if key not in self.seconds:
            done = len(self.seconds) + len(self._failures)
            self._say(
                f"docker build {done + 1}/{len(self.members)}: {c.id} "
                f"(context {key}, {len(self.members) - done - 1} left after it)"
            )
            try:
                log = self._log_dir / f"{key}.log"
                self.seconds[key] = build(
                    self._render(self.built[key]), self.args[key], log, "--tag", tag
                )
            except Exception as error:
                self._failures[key] = f"{c.id}: {error}"
                raise
            self._say(f"  built {tag} in {self.seconds[key]:.0f}s")
        return tag

    def run_tests(self, c: Combination) -> float:
        """Build the Dockerfile's test stage: the generated project's own pytest suite.

        On first call every planned context's test stage starts, one per core: each
        is a short build on top of the image's cached layers, mostly a pytest run.
        """
        if not self._tests:
            self._pool = ThreadPoolExecutor(os.cpu_count() or 1)
            for key, built in self.built.items():
                project = self._render(built)
                log = self._log_dir / f"{key}-test.log"
                tag = f"{IMAGE_PREFIX}:{key}-test"
                self._tests[key] = self._pool.submit(
                    build, project, self.args[key], log, "--target", "test", "--tag", tag
                )
        key = self.keys[c.id]
        seconds = self._tests[key].result()
        if key not in self.test_seconds:
            self.test_seconds[key] = seconds
            self._say(
                f"docker build --target test {len(self.test_seconds)}/{len(self.members)}: "
                f"{c.id} passed in {seconds:.0f}s"
            )
        return seconds

    def prune_stale(self) -> list[str]:
        """Remove this suite's images of contexts no longer planned: old renders' leftovers.

        Best effort: an image that a leftover container still uses stays.
        """
        tags = sh("docker", "image", "ls", "--format", "{{.Tag}}", IMAGE_PREFIX).split()
        stale = [f"{IMAGE_PREFIX}:{t}" for t in tags if t.removesuffix("-test") not in self.members]
        for chunk in range(0, len(stale), 100):
            sh("docker", "image", "rm", *stale[chunk : chunk + 100], timeout=600, check=False)
        left = sh("docker", "image", "ls", "--format", "{{.Tag}}", IMAGE_PREFIX).split()
        return [image for image in stale if image.partition(":")[2] not in left]

    def bound_build_cache(self) -> str:
        """Keep the build cache under CACHE_KEEP, the least recently used dropped first.

        A full run uses the cache of every planned context, so what goes is what older
        renders built. (`--filter until=` judges by creation, and would drop the ML
        layers every rerun reuses.) Returns what Docker holds afterwards.
        """
        sh("docker", "builder", "prune", "--force", "--keep-storage", CACHE_KEEP, timeout=600)
        return sh("docker", "system", "df", "--format", "{{.Type}}: {{.Size}}").replace("\n", "; ")

    @staticmethod
    def _failed(test: Future | None) -> bool:
        return bool(test and test.done() and not test.cancelled() and test.exception())

    def close(self) -> None:
        if self._pool:
            self._pool.shutdown(cancel_futures=True)

    def report(self) -> dict:
        return {
            "combinations": len(self.keys),
            "distinct_contexts": len(self.members),
            "built": len(self.seconds),
            "failed": sorted(self._failures.values()),
            "build_seconds": round(sum(self.seconds.values())),
            "test_stages_passed": len(self.test_seconds),
            "test_stage_seconds": round(sum(self.test_seconds.values())),
            "test_stages_failed": [
                members[0].id
                for key, members in self.members.items()
                if self._failed(self._tests.get(key))
            ],
            "contexts": {
                key: {"combinations": [c.id for c in members], "build_args": self.args[key]}
                for key, members in self.members.items()
            },
            "substitutions": self.notes,
        }
