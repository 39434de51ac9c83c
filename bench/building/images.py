"""Renders and images: a project rendered once and copied per Dockerfile, its builds,
and what is measured of an image (bytes, compressed bytes over the base, time to ready)."""

import gzip
import hashlib
import importlib.util
import json
import os
import re
import runpy
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .config import COPIER, DOCKERFILES, PORT, REPO, WORK, sh


@dataclass
class Project:
    """A render, copied once per Dockerfile into a folder of its own."""

    name: str
    path: Path
    package: str
    python: str
    build_args: dict[str, str] = field(default_factory=dict)


def render(name: str, data: dict[str, str]) -> Project:
    target = WORK / f"render-{name}"
    shutil.rmtree(target, ignore_errors=True)
    options = [arg for k, v in data.items() for arg in ("--data", f"{k}={v}")]
    sh(COPIER, "copy", "--defaults", "--quiet", "--vcs-ref", "HEAD", *options, REPO, target)
    answers = dict(
        line.split(": ", 1)
        for line in (target / ".copier-answers.yml").read_text().splitlines()
        if ": " in line
    )
    return Project(name, target, answers["package_name"].strip("'\""),
                   answers["python_version"].strip("'\""))  # fmt: skip


def variant(project: Project, dockerfile: str) -> Path:
    """The project with one of the Dockerfiles (and its .dockerignore) in place."""
    target = WORK / f"{project.name}-{dockerfile}"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(project.path, target)
    source, ignore = DOCKERFILES[dockerfile]
    if source:
        shutil.copy(source, target / "Dockerfile")
        shutil.copy(ignore, target / ".dockerignore")
    return target


def build(context: Path, tag: str, project: Project, label: str, *options: str) -> "Build":
    args = {
        "PYTHON_IMAGE": f"python:{project.python}-slim",
        "PACKAGE": project.package,
        **project.build_args,
    }
    arguments = [a for k, v in args.items() for a in ("--build-arg", f"{k}={v}")]
    logfile = WORK / f"{label}.log"
    started = time.monotonic()
    sh("docker", "build", "--progress", "plain", "--network", "host", *options,
       *arguments, "--tag", tag, context, log_to=logfile)  # fmt: skip
    return Build(time.monotonic() - started, logfile.read_text())


@dataclass
class Build:
    seconds: float
    log: str

    def steps_run(self) -> list[str]:
        """The RUN steps that ran rather than came from the cache."""
        steps, cached = {}, set()
        for line in self.log.splitlines():
            if m := re.match(r"#(\d+) \[[^\]]+\] RUN (.*)", line):
                steps[m[1]] = m[2]
            elif m := re.match(r"#(\d+) CACHED", line):
                cached.add(m[1])
        return [command for step, command in steps.items() if step not in cached]

    def ran_install(self, requirements: str) -> bool:
        return any("install" in s and requirements in s for s in self.steps_run())


def image_bytes(image: str) -> int:
    return int(sh("docker", "image", "inspect", "--format", "{{.Size}}", image))


def layers(image: str) -> list[str]:
    out = sh("docker", "image", "inspect", "--format", "{{json .RootFS.Layers}}", image)
    return json.loads(out)


def gzip_bytes_over(image: str, base: str) -> int:
    """Bytes a registry stores and a node pulls for the layers the base does not have."""
    own = set(layers(image)) - set(layers(base))
    total = 0
    save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
    with tarfile.open(fileobj=save.stdout, mode="r|") as archive:
        for member in archive:
            if not member.isfile() or not member.name.endswith((".tar", "/layer.tar")):
                continue
            data = archive.extractfile(member).read()
            if "sha256:" + hashlib.sha256(data).hexdigest() in own:
                total += len(gzip.compress(data, compresslevel=6))
    save.wait()
    return total


def seconds_to_ready(image: str) -> float:
    """From `docker run` (read-only root, the image's user) to /readyz answering 200."""
    started = time.monotonic()
    container = sh("docker", "run", "--detach", "--read-only", "--tmpfs", "/tmp",
                   "--network", "host", "--env", f"PORT={PORT}", "--env", "WORKERS=1",
                   image).strip()  # fmt: skip
    try:
        while time.monotonic() - started < 120:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/readyz", timeout=1):
                    return time.monotonic() - started
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{image} not ready in 120 s:\n{sh('docker', 'logs', container)}")
    finally:
        sh("docker", "rm", "--force", container)


def relock(project: Path, layer: str) -> None:
    """One layer's lock, by the project's own scripts/lock.py command (needs uv and PyPI)."""
    # uv as the template's venv pins it, where this script runs from.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    command = runpy.run_path(str(project / "scripts" / "lock.py"))["command"](layer)
    sh(*command, "--quiet", cwd=project)


def torch_cpu_index() -> tuple[str | None, object]:
    """PyTorch's CPU index if it answers, else the local wheel folder served on loopback."""
    try:
        urllib.request.urlopen("https://download.pytorch.org/whl/cpu/", timeout=5)
        return None, None
    except OSError:
        spec = importlib.util.spec_from_file_location(
            "wheel_index", REPO / "tests" / "infra" / "wheel-index.py"
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.serve()
