#!/usr/bin/env python3
"""Build benchmark: the generated Dockerfile next to docker init's and a naive one.

    python3 bench/build.py [--frameworks sklearn onnxruntime pytorch] [--ready-runs 5]

For the default render it builds three images from the same project: the generated
Dockerfile, the single-stage Dockerfile `docker init` writes (build/docker-init.Dockerfile)
and a naive one that copies everything before installing (build/naive.Dockerfile). Each
gets a cold build, a rebuild after a source-only change, a rebuild after a change to the
serving requirements, its bytes over the base image, and its time from `docker run` to
ready. Then each ML framework's render is built with the generated and the docker-init
Dockerfile for their sizes. Prints the tables and a line per target; exit status 0 when
every target is met, 1 otherwise. Work files and build logs go to bench/.work/build/.

A cold build starts with no layer cache (`--no-cache`) and no pip cache: the engine's
cache mounts are pruned first (the suite's next build downloads its wheels again).
"""

import argparse
import gzip
import hashlib
import importlib.util
import json
import os
import re
import runpy
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
WORK = BENCH / ".work" / "build"
COPIER = REPO / ".venv" / "bin" / "copier"
DOCKERFILES = {  # name -> Dockerfile, .dockerignore (None: the render's own)
    "generated": (None, None),
    "docker-init": (BENCH / "build" / "docker-init.Dockerfile", BENCH / "build" / "dockerignore"),
    "naive": (BENCH / "build" / "naive.Dockerfile", BENCH / "build" / "dockerignore"),
}
# A serving dependency the template does not pin, for the dependency-change rebuild.
NEW_SERVING_DEPENDENCY = "orjson==3.11.5"
SIZE_TARGET = 0.60  # the generated image's bytes over the base, against docker init's
SOURCE_REBUILD_TARGET_S = 2.0
READY_SLOWER_BY_AT_MOST = 1.10  # ready time against docker init's image: noise allowance
PORT = 18740


def log(message: str) -> None:
    print(f"build-bench {time.strftime('%H:%M:%S')}: {message}", file=sys.stderr, flush=True)


def sh(*command, cwd: Path | None = None, log_to: Path | None = None) -> str:
    out = log_to.open("w") if log_to else subprocess.PIPE
    try:
        done = subprocess.run(
            [str(c) for c in command], cwd=cwd, stdout=out, stderr=subprocess.STDOUT, text=True
        )
    finally:
        if log_to:
            out.close()
    text = log_to.read_text() if log_to else done.stdout
    if done.returncode:
        raise RuntimeError(f"{' '.join(map(str, command))} failed:\n{text[-3000:]}")
    return text


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


@dataclass
class Row:
    image: str
    dockerfile: str
    cold_s: float
    source_s: float
    source_reran: list[str]
    serving_s: float
    ml_reused: bool
    over_base: int
    gzip_over_base: int
    ready: list[float] = field(default_factory=list)
    ready_s: float = 0.0


def measure(project: Project, dockerfile: str, base: str) -> Row:
    context = variant(project, dockerfile)
    tag = f"ml-docker-template-build-bench:{project.name}-{dockerfile}"
    log(f"{dockerfile}: cold build (no layer cache, no pip cache)")
    sh("docker", "builder", "prune", "--force", "--filter", "type=exec.cachemount")
    started = time.monotonic()
    cold = build(context, tag, project, f"{dockerfile}-cold", "--no-cache")
    log(f"{dockerfile}: rebuild after a source-only change")
    app = context / "src" / project.package / "app.py"
    app.write_text(app.read_text() + "\n# a source-only change\n")
    source = build(context, tag, project, f"{dockerfile}-source")
    log(f"{dockerfile}: rebuild after a serving-dependency change ({NEW_SERVING_DEPENDENCY})")
    serving, lock = (context / "requirements" / f"serving.{kind}" for kind in ("txt", "lock"))
    before = serving.read_text(), lock.read_text()
    serving.write_text(before[0] + NEW_SERVING_DEPENDENCY + "\n")
    relock(context, "serving")  # as a team does: edit the .txt, lock it again
    # A layer an earlier run built for the same change would come from the cache: forget
    # what this run has not used (the generated Dockerfile installs the web stack from
    # its lock's entries, not its bytes, so a comment in the lock would not tell them apart).
    since = f"until={int(time.monotonic() - started) + 1}s"
    sh("docker", "builder", "prune", "--force", "--filter", since)
    changed = build(context, tag, project, f"{dockerfile}-serving")
    serving.write_text(before[0])
    lock.write_text(before[1])
    final = build(context, tag, project, f"{dockerfile}-final")  # the image measured below
    log(f"{dockerfile}: {final.seconds:.1f} s back to the measured image, and its size")
    return Row(
        tag,
        dockerfile,
        cold.seconds,
        source.seconds,
        [s for s in source.steps_run() if "install" in s],
        changed.seconds,
        not changed.ran_install("ml.lock"),
        image_bytes(tag) - image_bytes(base),
        gzip_bytes_over(tag, base),
    )


def time_to_ready(rows: list["Row"], runs: int) -> None:
    """Each image's median time to ready, the images taking turns run after run: a start
    right after a build, or in a quieter minute, favours no Dockerfile."""
    for n in range(runs):
        log(f"time to ready, round {n + 1} of {runs}")
        for row in rows:
            row.ready.append(seconds_to_ready(row.image))
    for row in rows:
        row.ready_s = statistics.median(row.ready)


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


def mb(n: int) -> str:
    return f"{n / 1e6:.1f}"


def table(header: list[str], rows: list[list[str]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()


def framework_sizes(frameworks: list[str], default: Project) -> list[tuple]:
    """Each ML framework's render built with the generated and docker init's Dockerfile."""
    sizes, server = [], None
    for framework in frameworks:
        data = {"ml_framework": framework}
        index = None
        if framework == "pytorch":
            index, server = torch_cpu_index()
            if index:  # the local wheel folder has a CPU wheel for Python 3.11 only
                data["python_version"] = "3.11"
        project = default if framework == "sklearn" else render(framework, data)
        if index:
            project.build_args["TORCH_INDEX_URL"] = index
        base = f"python:{project.python}-slim"
        sh("bash", REPO / "tests/infra/base-images.sh", project.python)
        measured = {}
        for name in ("generated", "docker-init"):
            tag = f"ml-docker-template-build-bench:{framework}-{name}"
            log(f"{framework}: {name} image, for its size")
            build(variant(project, name), tag, project, f"{framework}-{name}")
            measured[name] = (image_bytes(tag) - image_bytes(base), gzip_bytes_over(tag, base))
        sizes.append((framework, project.python, measured))
        if server:
            server.terminate()
            server.wait(timeout=10)
    return sizes


def report(default: Project, base: str, rows: list[Row], sizes: list[tuple], runs: int) -> None:
    if rows:
        print(f"\nDefault render ({default.package}, Python {default.python}, base {base}):\n")
        table(
            ["Dockerfile", "cold build s", "source-only rebuild s", "installs re-run",
             "serving change rebuild s", "ML layer reused", "MB over base",
             "gzip MB over base", f"ready s (median of {runs})"],
            [[r.dockerfile, f"{r.cold_s:.1f}", f"{r.source_s:.2f}", str(len(r.source_reran)),
              f"{r.serving_s:.1f}", "yes" if r.ml_reused else "no", mb(r.over_base),
              mb(r.gzip_over_base), f"{r.ready_s:.2f}"] for r in rows],
        )  # fmt: skip
    print("Each ML framework's render, the generated image against docker init's:\n")
    table(
        ["ML framework", "Python", "generated MB over base", "docker-init MB over base",
         "ratio", "generated gzip MB", "docker-init gzip MB", "gzip ratio"],
        [[f, p, mb(m["generated"][0]), mb(m["docker-init"][0]),
          f"{m['generated'][0] / m['docker-init'][0]:.2f}", mb(m["generated"][1]),
          mb(m["docker-init"][1]), f"{m['generated'][1] / m['docker-init'][1]:.2f}"]
         for f, p, m in sizes],
    )  # fmt: skip


def targets(rows: list[Row]) -> int:
    generated, init = rows[0], rows[1]
    ratio = generated.over_base / init.over_base
    checks = [
        (f"source-only rebuild {generated.source_s:.2f} s <= {SOURCE_REBUILD_TARGET_S} s, "
         f"no install re-run ({len(generated.source_reran)} re-ran)",
         generated.source_s <= SOURCE_REBUILD_TARGET_S and not generated.source_reran),
        ("ML layer reused on a serving-dependency change", generated.ml_reused),
        (f"bytes over base {ratio:.2f} of docker init's image, target <= {SIZE_TARGET}",
         ratio <= SIZE_TARGET),
        (f"ready {generated.ready_s:.2f} s, docker init's image {init.ready_s:.2f} s "
         f"(target: at most {READY_SLOWER_BY_AT_MOST}x)",
         generated.ready_s <= init.ready_s * READY_SLOWER_BY_AT_MOST),
    ]  # fmt: skip
    for text, met in checks:
        print(f"- {'met' if met else 'NOT met'}: {text}")
    return 0 if all(met for _, met in checks) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frameworks", nargs="*", default=["sklearn", "onnxruntime", "pytorch"])
    parser.add_argument("--ready-runs", type=int, default=5)
    parser.add_argument("--sizes-only", action="store_true", help="only the frameworks' sizes")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    sh("make", "-C", REPO, ".venv/.installed")
    sh("bash", REPO / "tests/infra/docker-engine.sh", "start")
    default = render("default", {})
    base = f"python:{default.python}-slim"
    log(sh("bash", REPO / "tests/infra/base-images.sh", default.python).strip())
    rows = []
    if not args.sizes_only:
        rows = [measure(default, name, base) for name in DOCKERFILES]
        time_to_ready(rows, args.ready_runs)
    sizes = framework_sizes(args.frameworks, default)
    report(default, base, rows, sizes, args.ready_runs)
    return targets(rows) if rows else 0


if __name__ == "__main__":
    sys.exit(main())
