"""A team's project through `copier update`: its edits, and what an update must leave.

The update stages (tests/test_update.py, tests/test_update_flow.py) share these: the
releases made from this repository's history, the fixed team edits, and the check that an
updated project is a fresh render of the new release plus the edits.
"""

import difflib
import hashlib
import importlib.metadata
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from releases import (
    Releases,
    add_next_release,
    commit_all,
    copier,
    data_args,
    make_releases,
    render_release,
    tree,
)


@pytest.fixture(scope="session")
def releases(tmp_path_factory) -> Releases:
    return make_releases(tmp_path_factory.mktemp("releases") / "ml-docker-template")


@pytest.fixture(scope="session")
def next_release(tmp_path_factory) -> tuple[Releases, str]:
    """Releases of their own, plus a synthetic one after the newest (the scheduled update
    script's case: the project is on the newest release, which ships the script)."""
    releases = make_releases(tmp_path_factory.mktemp("next-release") / "ml-docker-template")
    return releases, add_next_release(releases)


def fresh_render(releases: Releases, answers: dict, into: Path, version: str = "") -> dict:
    """Every file of `copier copy` at `version` (the newest release by default)."""
    return tree(render_release(releases, version or releases.newest, answers, into))


# ---------------------------------------------------------------- the team's edits


@dataclass(frozen=True)
class Edit:
    """A change a team makes to one generated file: `apply` maps its text to the edited text."""

    path: str
    apply: Callable[[str], str]
    survives: str  # text that must still be in the file after any update


def _replace_once(old: str, new: str) -> Callable[[str], str]:
    def apply(text: str) -> str:
        assert old in text, f"the team's edit expected {old!r}"
        return text.replace(old, new, 1)

    return apply


ROUTE = """    @app.get("/team/version")
    def team_version():
        return {"version": "team-1"}

    return app
"""
RUNBOOK = "\n## Runbook (team)\n\nPage the on-call owner of the fraud model first.\n"
FEATURES = '''"""Feature engineering owned by the team."""


def scale(x: float) -> float:
    return x / 10
'''
# The memory limit, whatever the render set it to: the first `memory:` after `limits:`.
MEMORY_LIMIT = re.compile(r"(limits:\n(?:[ ]+\S.*\n)*?[ ]+memory: )(\S+)")


def team_edits(package: str, framework_neutral_only: bool = False) -> list[Edit]:
    """The fixed set; framework-neutral ones only when a scenario switches web framework."""
    edits = [
        Edit("requirements/serving.txt", lambda t: t + "orjson==3.11.5\n", "orjson==3.11.5"),
        Edit(
            "k8s/base/deployment.yaml",
            lambda text: MEMORY_LIMIT.sub(r"\g<1>6Gi", text, count=1),
            "memory: 6Gi",
        ),
        Edit("README.md", lambda t: t + RUNBOOK, "## Runbook (team)"),
    ]
    if not framework_neutral_only:
        route = _replace_once("\n    return app\n", "\n" + ROUTE)
        edits.append(Edit(f"src/{package}/app.py", route, "/team/version"))
    return edits


def edit_project(project: Path, edits: list[Edit]) -> dict[str, bytes]:
    """Apply the edits, replace every model file with the team's own bytes, add a module."""
    for edit in edits:
        path = project / edit.path
        path.write_text(edit.apply(path.read_text()))
    for path in sorted((project / "model").iterdir()):
        if path.suffix != ".json":
            path.write_bytes(b"team model " + hashlib.sha256(path.read_bytes()).digest())
    metadata = project / "model" / "metadata.json"
    if metadata.exists():
        metadata.write_text(metadata.read_text().replace("{", '{"owner": "fraud-team", ', 1))
    (project / "model" / "NOTES.md").write_text("Trained on 2026-11 data.\n")
    package = yaml.safe_load((project / ".copier-answers.yml").read_text())["package_name"]
    (project / "src" / package / "features.py").write_text(FEATURES)
    commit_all(project, "Team edits")
    return tree(project, "model")


# ---------------------------------------------------------------- what an update must leave


def conflicted(project: Path, since: str = "HEAD") -> set[str]:
    """Files with conflict markers, as `git diff --check` reports them (exit 2). Written
    apart from the generated script's `conflicts()` on purpose: this is the command that
    Copier's message and the README give people, checked on its own."""
    done = subprocess.run(
        ["git", "diff", since, "--check"], cwd=project, capture_output=True, text=True
    )
    lines = done.stdout.splitlines()
    files = {line.split(":", 1)[0] for line in lines if "conflict marker" in line}
    assert bool(files) == (done.returncode != 0), done.stdout
    return files


def pre_commit_finds_markers(project: Path, files: set[str]) -> set[str]:
    """Run the generated config's check-merge-conflict hook (pre-commit-hooks, at the rev the
    config pins) with the config's arguments on `files`; the files it flags."""
    text = (project / ".pre-commit-config.yaml").read_text()
    config = yaml.safe_load(text)
    repo, hook = next(
        (r, h) for r in config["repos"] for h in r["hooks"] if h["id"] == "check-merge-conflict"
    )
    # The rev is a commit SHA; the version it is frozen at is in the comment after it.
    frozen = re.search(rf"rev: {repo['rev']}\s+# frozen: (\S+)", text)
    version = frozen[1] if frozen else repo["rev"]
    assert version == "v" + importlib.metadata.version("pre-commit-hooks"), version
    done = subprocess.run(
        [sys.executable, "-m", "pre_commit_hooks.check_merge_conflict", *hook.get("args", []),
         *sorted(files)],
        cwd=project, capture_output=True, text=True,
    )  # fmt: skip
    return {f for f in files if f"{f}:" in done.stdout} if done.returncode else set()


def check_updated(project: Path, expected: dict[str, bytes], edits: list[Edit],
                  model_before: dict[str, bytes]) -> set[str]:  # fmt: skip
    """The update's result against a fresh render plus the edits; returns conflicted files."""
    assert tree(project, "model") == model_before, "model/ changed"
    got = tree(project)
    assert not [p for p in got if p.endswith(".rej")], "Copier left .rej files"
    package = yaml.safe_load(got[".copier-answers.yml"])["package_name"]
    team_files = {f"src/{package}/features.py"}
    expected = {p: b for p, b in expected.items() if not p.startswith("model/")}
    assert set(got) - set(model_before) - team_files == set(expected), (
        "files differ from a fresh render's: "
        f"extra {sorted(set(got) - set(model_before) - team_files - set(expected))}, "
        f"missing {sorted(set(expected) - set(got))}"
    )
    edited = {edit.path: edit for edit in edits}
    conflicts = conflicted(project)
    for path, fresh in expected.items():
        if path not in edited:
            assert got[path] == fresh, f"{path} is not a fresh render's:\n{diff(fresh, got[path])}"
            continue
        text, edit = got[path].decode(), edited[path]
        assert edit.survives in text, f"the team's edit to {path} was lost"
        if path not in conflicts:
            wanted = edit.apply(fresh.decode())
            changes = diff(wanted.encode(), got[path])
            assert text == wanted, f"{path} is not a fresh render plus the edit:\n{changes}"
    assert got[f"src/{package}/features.py"].decode() == FEATURES
    assert conflicts <= set(edited), f"conflicts in files the team never touched: {conflicts}"
    if conflicts:
        assert pre_commit_finds_markers(project, conflicts) == conflicts
    return conflicts


def diff(a: bytes, b: bytes) -> str:
    lines = difflib.unified_diff(a.decode().splitlines(), b.decode().splitlines(), lineterm="")
    return "\n".join(list(lines)[:40])


def update(project: Path, version: str, answers: dict | None = None) -> str:
    """`copier update` as the generated docs/template-updates.md says, without --trust;
    Copier's message."""
    done = copier("update", "--defaults", "--conflict=inline", f"--vcs-ref={version}",
                  *data_args(answers or {}), cwd=project)  # fmt: skip
    return done.stderr
