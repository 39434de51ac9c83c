"""Lock every combination's requirements into includes/locks/, and the template's own tooling.

    .venv/bin/python tools/relock.py [--upgrade] [--only py3.13/sklearn]

Run it after changing a pin in template/requirements/*.txt.jinja: it renders one project per
Python version, ML framework build, web framework and model source (the container registry
changes no requirement), and locks each with that project's own scripts/lock.py commands, so
a rendered lock is byte for byte what `python scripts/lock.py` makes in a generated repository
on the day of the release. ml.lock and train.lock are made once per Python version and ML
framework build and shared by its serving stacks. Then requirements-dev.lock, what `make`
installs for the suite, from pyproject.toml's test extra: run it after changing a pin
there too. Needs PyPI, and uv (pinned in pyproject.toml, so in .venv).

PyTorch's CPU index is out of this machine's reach: tools/torch_cpu_links.py stands in for
it, listing the wheels and digests that index publishes (see there).
"""

from __future__ import annotations

import argparse
import os
import runpy
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from copier import run_copy

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tools")]

import torch_cpu_links  # noqa: E402

from combinations import ALL  # noqa: E402

LOCKS = ROOT / "includes" / "locks"
# The template repository's own tooling (pyproject.toml's test extra), as `make` installs it:
# the suite runs on Linux with Python 3.11 to 3.13, torch as PyTorch's CPU build.
TOOLING = "requirements-dev.lock"


def tooling_command(torch_index: str) -> list[str]:
    """The uv command that writes requirements-dev.lock (its header, less the index URL)."""
    return [
        "uv", "pip", "compile", "--generate-hashes", "--universal", "--python-version=3.11",
        "--extra=test", f"--extra-index-url={torch_index}", "--index-strategy=unsafe-best-match",
        f"--output-file={TOOLING}", "pyproject.toml",
    ]  # fmt: skip


def render(answers: dict, into: Path, torch_index: str) -> Path:
    run_copy(str(ROOT), into, data=answers, defaults=True, vcs_ref="HEAD", quiet=True)
    # A CPU-PyTorch project names PyTorch's index in uv.toml, not in the locks' headers.
    uv_toml = into / "uv.toml"
    if uv_toml.exists():
        uv_toml.write_text(uv_toml.read_text().replace(torch_cpu_links.REAL_INDEX, torch_index))
    return into


def lock(project: Path, layer: str, options: list[str], env: dict[str, str]) -> None:
    script = runpy.run_path(str(project / "scripts" / "lock.py"))
    command = [*script["command"](layer), "--quiet", *options]
    done = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{project.name}: {' '.join(command)}\n{done.stderr}")


def lock_ml_build(
    key: str, members: list, options: list[str], env: dict, work: Path, torch_index: str
) -> str:
    """ml.lock (and train.lock) of one Python version and ML build, then each serving stack's."""
    ml_folder = LOCKS / key
    first = render(members[0].answers, work / key.replace("/", "-"), torch_index)
    layers = runpy.run_path(str(first / "scripts" / "lock.py"))["LAYERS"]
    for layer in ("ml", "train"):
        if layer in layers:
            lock(first, layer, options, env)
            ml_folder.mkdir(parents=True, exist_ok=True)
            shutil.copy(first / "requirements" / f"{layer}.lock", ml_folder)
    for c in members:
        stack = f"{c.web_framework}-{c.model_registry or c.model_source}"
        project = render(c.answers, work / f"{key.replace('/', '-')}-{stack}", torch_index)
        shutil.copy(ml_folder / "ml.lock", project / "requirements")
        (ml_folder / stack).mkdir(exist_ok=True)
        for layer in ("serving", "test"):
            lock(project, layer, options, env)
            shutil.copy(project / "requirements" / f"{layer}.lock", ml_folder / stack)
    return f"{key}: {len(members)} serving stacks"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upgrade", action="store_true", help="newest versions the pins allow")
    parser.add_argument("--only", help="one Python version and ML build, e.g. py3.13/pytorch-gpu")
    args = parser.parse_args()
    options = ["--upgrade"] if args.upgrade else []
    # uv as pyproject.toml pins it, from the venv this script runs in.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    if shutil.which("uv") is None:
        raise SystemExit("tools/relock.py needs uv: make .venv/.installed")

    builds: dict[str, list] = {}
    for c in ALL:
        if c.container_registry == "ghcr":
            key = f"py{c.python_version}/{c.ml_framework}{'-gpu' if c.gpu else ''}"
            builds.setdefault(key, []).append(c)
    if args.only:
        builds = {args.only: builds[args.only]}

    url, server = torch_cpu_links.serve(torch_cpu_links.local_wheel())
    torch_index = url.removesuffix("torch/")
    # uv must not try to download a Python of the locked version (the lock needs none).
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    try:
        with tempfile.TemporaryDirectory() as work, ThreadPoolExecutor(4) as pool:
            jobs = [
                pool.submit(lock_ml_build, key, members, options, env, Path(work), torch_index)
                for key, members in builds.items()
            ]
            for job in jobs:
                print(job.result(), flush=True)
        if not args.only:
            command = [*tooling_command(torch_index), "--quiet", *options]
            subprocess.run(command, cwd=ROOT, env=env, check=True)  # noqa: S603
            print(f"{TOOLING}: the template's own tooling", flush=True)
    finally:
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
