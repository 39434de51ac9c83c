"""Stage: `copier update` as a team lives it, through the template's tagged releases.

Each scenario copies a project from a release, commits it, makes the same team edits (their
own model bytes, a dependency, Kubernetes resources, a route, a README section, a module),
commits, and updates. Afterwards every file is what a fresh render of the new release and
answers gives, with the team's edits applied to it; model/ is byte for byte the team's; no
.rej file exists; and wherever Copier could not merge an edit, the markers it left are found
by `git diff --check` and by the generated pre-commit hook.
"""

import difflib
import hashlib
import importlib.metadata
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from combinations import ALL, TEMPLATE_ROOT, Combination
from releases import (
    COPIER,
    GIT_ENV,
    NEXT_RELEASE_FILE,
    Releases,
    add_next_release,
    commit_all,
    copier,
    copy_project,
    data_args,
    git,
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
    """`copier update` as the generated README says, without --trust; Copier's message."""
    done = copier("update", "--defaults", "--conflict=inline", f"--vcs-ref={version}",
                  *data_args(answers or {}), cwd=project)  # fmt: skip
    return done.stderr


# ---------------------------------------------------------------- the scenarios


def _by_id(combination_id: str) -> Combination:
    return next(c for c in ALL if c.id == combination_id)


# The default; PyTorch, whose sample a release renamed (model.pt -> model.pt2); a GPU
# registry-mode service on Flask. Each with the files where the team's edits and the
# releases since meet, conflicts a person must settle (CHANGELOG.md's upgrade notes say
# so): the README's end, which 0.1.0 had no footer to protect; the line before FastAPI's
# `return app`, where the team added its route and 0.3.0 its /predict route; the MLflow
# client line that 0.4.0 moved to the top of serving.txt, the context of the team's
# appended dependency.
FROM_OLDEST = {
    _by_id("py3.13-fastapi-sklearn-embedded-ghcr"): {"README.md", "src/iris_classifier/app.py"},
    _by_id("py3.12-flask-pytorch-embedded-dockerhub"): {"README.md"},
    _by_id("py3.11-flask-onnxruntime-gpu-mlflow-ecr"): {"README.md", "requirements/serving.txt"},
}


@pytest.mark.parametrize("combination", FROM_OLDEST, ids=lambda c: c.id)
def test_an_update_from_the_oldest_release_keeps_every_team_edit(
    combination: Combination, releases: Releases, tmp_path: Path
):
    project = copy_project(releases, releases.oldest, combination.answers, tmp_path / "project")
    package = yaml.safe_load((project / ".copier-answers.yml").read_text())["package_name"]
    edits = team_edits(package)
    model_before = edit_project(project, edits)
    message = update(project, releases.newest)
    assert "git diff --check" in message and "model/ is as it was" in message
    expected = fresh_render(releases, combination.answers, tmp_path / "fresh")
    assert check_updated(project, expected, edits, model_before) == FROM_OLDEST[combination]
    recorded = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert recorded["_commit"] == releases.newest


# Answers before, the change, and the files where the change and the team's edits meet.
# ONNX Runtime's pods get another memory limit than scikit-learn's, and the team changed
# that very line: a conflict a person must settle, so the update must mark it.
SWITCHES = {
    "fastapi-to-flask": ({}, {"web_framework": "flask"}, set()),
    "sklearn-to-onnxruntime": ({}, {"ml_framework": "onnxruntime"}, {"k8s/base/deployment.yaml"}),
    "embedded-to-registry": ({}, {"model_source": "registry", "model_registry": "s3"}, set()),
    "registry-to-embedded": ({"model_source": "registry", "model_registry": "gcs"},
                             {"model_source": "embedded"}, set()),
}  # fmt: skip


@pytest.mark.parametrize("switch", SWITCHES, ids=str)
def test_changing_an_answer_on_update_renders_the_new_choice_plus_the_team_edits(
    switch: str, releases: Releases, tmp_path: Path
):
    before, change, conflicts = SWITCHES[switch]
    project = copy_project(releases, releases.newest, before, tmp_path / "project")
    package = yaml.safe_load((project / ".copier-answers.yml").read_text())["package_name"]
    edits = team_edits(package, framework_neutral_only=True)
    model_before = edit_project(project, edits)
    update(project, releases.newest, change)
    expected = fresh_render(releases, {**before, **change}, tmp_path / "fresh")
    assert check_updated(project, expected, edits, model_before) == conflicts


def run_update_script(project: Path, tmp_path: Path) -> dict[str, str]:
    """The generated scripts/template_update.py, as the scheduled workflow runs it; its
    outputs (what the workflow's next step would open a pull request with)."""
    outputs, env = tmp_path / "github-output", dict(GIT_ENV)
    outputs.unlink(missing_ok=True)  # the workflow gives each run a new file
    env["PATH"] = f"{COPIER.parent}{os.pathsep}{env['PATH']}"
    done = subprocess.run(
        [sys.executable, "scripts/template_update.py", "--body-file", str(tmp_path / "body.md"),
         "--github-output", str(outputs)],
        cwd=project, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return dict(line.split("=", 1) for line in outputs.read_text().splitlines())


def test_the_update_script_puts_a_new_release_on_a_branch(next_release, tmp_path: Path):
    releases, version = next_release
    project = copy_project(releases, releases.newest, {}, tmp_path / "project")
    edits = team_edits("iris_classifier")
    model_before = edit_project(project, edits)
    outputs = run_update_script(project, tmp_path)
    title = f"Update from ml-docker-template {releases.newest} to {version}"
    assert outputs == {
        "updated": "true", "version": version, "branch": f"template-update/{version}",
        "title": title, "conflicts": "0", "body-file": str(tmp_path / "body.md"),
    }  # fmt: skip
    assert git("branch", "--show-current", cwd=project).strip() == outputs["branch"]
    assert git("log", "-1", "--format=%s", cwd=project).strip() == title
    assert git("status", "--porcelain", cwd=project) == "", "the update was not all committed"
    assert "no conflicts" in (tmp_path / "body.md").read_text()
    expected = fresh_render(releases, {}, tmp_path / "fresh", version)
    check_updated(project, expected, edits, model_before)
    # Merged, the next scheduled run finds nothing to do.
    git("switch", "--quiet", "main", cwd=project)
    git("merge", "--quiet", "--ff-only", outputs["branch"], cwd=project)
    assert run_update_script(project, tmp_path) == {"updated": "false", "version": version}


def test_the_update_script_names_a_changed_file_the_team_renamed(next_release, tmp_path: Path):
    """The team renamed the autoscaler's manifest; the next release raises its maxReplicas.
    Copier merges into the template's path only: the pull request must say what it missed."""
    releases, _ = next_release
    project = copy_project(releases, releases.newest, {}, tmp_path / "project")
    base = project / "k8s" / "base"
    (base / "horizontalpodautoscaler.yaml").rename(base / "hpa.yaml")
    kustomization = (base / "kustomization.yaml").read_text()
    (base / "kustomization.yaml").write_text(
        kustomization.replace("- horizontalpodautoscaler.yaml", "- hpa.yaml")
    )
    commit_all(project, "Team: a shorter name for the autoscaler")
    outputs = run_update_script(project, tmp_path)
    assert outputs["updated"] == "true"
    said = (tmp_path / "body.md").read_text()
    assert "- `k8s/base/horizontalpodautoscaler.yaml`" in said, said
    assert "no conflicts" in said and "Copier merged every change" not in said, said
    # What it names, it names because the change is not there: hpa.yaml kept the old value.
    assert "maxReplicas: 10\n" in (base / "hpa.yaml").read_text()
    # Files the team kept at their path got the release's change and are not named.
    kept = NEXT_RELEASE_FILE.removeprefix("template/").replace(
        "{{package_name}}", "iris_classifier"
    )
    assert (project / kept).exists() and f"`{kept}`" not in said and "`README.md`" not in said


PUSH_AND_OPEN = "Push the branch and open the pull request"
GITHUB_REMOTE = "https://x-access-token:token@github.example/team/service.git"


def run_workflow_step(project: Path, outputs: dict, github: Path) -> subprocess.CompletedProcess:
    """The update workflow's step that pushes the branch and opens the pull request, its
    shell run as GitHub runs it (bash -eo pipefail), against a bare repository for GitHub's
    git (the step's https remote is rewritten to it) and tests/fake_gh.py for its CLI."""
    workflow = yaml.safe_load((project / ".github/workflows/template-update.yaml").read_text())
    (step,) = [s for s in workflow["jobs"]["update"]["steps"] if s.get("name") == PUSH_AND_OPEN]
    bin_dir = github / "bin"
    bin_dir.mkdir(exist_ok=True)
    gh = bin_dir / "gh"
    gh.write_text(f'#!/bin/sh\nexec {sys.executable} {TEMPLATE_ROOT / "tests/fake_gh.py"} "$@"\n')
    gh.chmod(0o755)
    env = {
        **GIT_ENV, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "FAKE_GITHUB": str(github / "pulls.json"), "GH_TOKEN": "token",
        "GITHUB_SERVER_URL": "https://github.example", "GITHUB_REPOSITORY": "team/service",
        "BRANCH": outputs["branch"], "TITLE": outputs["title"],
        "BODY_FILE": outputs["body-file"], "CONFLICTS": outputs["conflicts"],
        "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": f"url.{github / 'remote.git'}.insteadOf",
        "GIT_CONFIG_VALUE_0": GITHUB_REMOTE,
    }  # fmt: skip
    command = ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]]
    return subprocess.run(command, cwd=project, env=env, capture_output=True, text=True)


def test_a_pull_request_github_refused_is_opened_by_the_next_run(next_release, tmp_path: Path):
    """GitHub refuses the first pull request (Actions may not create them by default): that
    run is red, and the next, finding the branch pushed but no pull request, opens it."""
    releases, version = next_release
    project = copy_project(releases, releases.newest, {}, tmp_path / "project")
    github = tmp_path / "github"
    github.mkdir()
    git("init", "--quiet", "--bare", str(github / "remote.git"), cwd=tmp_path)
    (github / "pulls.json.refuse").touch()

    def pulls() -> list[tuple[str, str]]:
        state = github / "pulls.json"
        found = json.loads(state.read_text()) if state.exists() else []
        return [(pull["headRefName"], pull["state"]) for pull in found]

    refused = run_workflow_step(project, run_update_script(project, tmp_path), github)
    assert refused.returncode != 0 and "not permitted" in refused.stderr, refused
    assert pulls() == []
    branch = f"template-update/{version}"
    assert git("ls-remote", "--heads", str(github / "remote.git"), cwd=tmp_path).strip()
    for _ in range(2):  # the next scheduled runs, from main again
        git("switch", "--quiet", "main", cwd=project)
        opened = run_workflow_step(project, run_update_script(project, tmp_path), github)
        assert opened.returncode == 0, opened.stderr
        assert pulls() == [(branch, "OPEN")], opened.stdout  # opened once, then left alone


def test_the_update_script_commits_a_conflict_marked_and_names_it(next_release, tmp_path: Path):
    """The team edited the line the next release changes: the script commits the markers
    on its branch for a person, names the file in the title and body, and `git diff
    --check` and the generated pre-commit hook find them."""
    releases, _ = next_release
    project = copy_project(releases, releases.newest, {}, tmp_path / "project")
    rendered = NEXT_RELEASE_FILE.removeprefix("template/")
    path = rendered.replace("{{package_name}}", "iris_classifier")
    first, rest = (project / path).read_text().split("\n", 1)
    (project / path).write_text(first.replace('"""', '"""Team: ', 1) + "\n" + rest)
    commit_all(project, "Team edit on the line the next release changes")
    outputs = run_update_script(project, tmp_path)
    assert outputs["conflicts"] == "1" and outputs["title"].startswith("[1 conflict(s)] ")
    assert f"- `{path}`" in (tmp_path / "body.md").read_text()
    assert git("status", "--porcelain", cwd=project) == "", "the markers were not committed"
    assert conflicted(project, since="main") == {path}
    assert pre_commit_finds_markers(project, {path}) == {path}
    assert not list(project.rglob("*.rej"))


def test_a_conflicting_edit_is_left_marked_and_caught(releases: Releases, tmp_path: Path):
    """Over the real release history: the team edits a line the template changed since the
    oldest release; the update marks it, exits 0 as Copier does, and the checks stop it."""
    project = copy_project(releases, releases.oldest, {}, tmp_path / "project")
    old = tree(project)
    new = fresh_render(releases, {}, tmp_path / "fresh")
    path, line = changed_line(old, new)
    target = project / path
    target.write_text(target.read_text().replace(line, line + "  # team", 1))
    commit_all(project, "Team edit on a line the template changed")
    update(project, releases.newest)
    assert conflicted(project) == {path}
    # The command Copier's message and the README give, as typed.
    check = ["git", "diff", "--check"]
    documented = subprocess.run(check, cwd=project, capture_output=True, text=True)
    assert documented.returncode != 0 and f"{path}:" in documented.stdout, documented.stdout
    assert pre_commit_finds_markers(project, {path}) == {path}
    assert not list(project.rglob("*.rej"))
    text = target.read_text()
    assert line + "  # team" in text
    assert "<<<<<<< before updating" in text and ">>>>>>> after updating" in text


def changed_line(old: dict[str, bytes], new: dict[str, bytes]) -> tuple[str, str]:
    """A Python file's line that the newer release replaced: the place a conflict must come."""
    for path in sorted(p for p in old if p.endswith(".py") and p in new):
        a, b = old[path].decode().splitlines(), new[path].decode().splitlines()
        for tag, i1, _, _, _ in difflib.SequenceMatcher(None, a, b).get_opcodes():
            if tag == "replace" and a[i1].strip() and a.count(a[i1]) == 1:
                return path, a[i1]
    raise AssertionError("no Python file changed between the oldest release and this one")


def test_an_organisation_preset_is_recorded_and_kept_by_updates(releases: Releases, tmp_path: Path):
    preset = TEMPLATE_ROOT / "presets" / "example-org.yml"
    org = yaml.safe_load(preset.read_text())
    project = tmp_path / "project"
    copy = ["copy", "--defaults", "--quiet", f"--vcs-ref={releases.newest}"]
    copier(*copy, f"--data-file={preset}", "--data=project_name=Fraud Scorer",
           str(releases.repo), str(project), cwd=tmp_path)  # fmt: skip
    git("init", "--quiet", "--initial-branch=main", cwd=project)
    commit_all(project, "Generated from ml-docker-template with the organisation's preset")
    image = f"{org['registry_host']}/{org['image_namespace']}/fraud-scorer"

    def recorded_and_used(step: str) -> dict:
        recorded = yaml.safe_load((project / ".copier-answers.yml").read_text())
        assert {key: recorded[key] for key in org} == org, step
        workflow = (project / ".github/workflows/ci.yaml").read_text()
        assert re.search(rf"\n +(images|IMAGE): {re.escape(image)}\n", workflow), step
        return recorded

    recorded_and_used("copied")
    update(project, releases.newest, {"web_framework": "flask"})
    assert recorded_and_used("updated")["web_framework"] == "flask"


# One combination per answer value: together they render every file any combination does.
NOTES_COVERAGE = [
    _by_id("py3.13-fastapi-sklearn-embedded-ghcr"),
    _by_id("py3.12-flask-pytorch-s3-dockerhub"),
    _by_id("py3.11-fastapi-onnxruntime-gpu-gcs-ecr"),
    _by_id("py3.13-flask-pytorch-gpu-mlflow-gar"),
    _by_id("py3.12-fastapi-onnxruntime-https-acr"),
    _by_id("py3.11-flask-sklearn-s3-other"),
]


def test_files_the_newest_release_stops_rendering_are_named_in_its_upgrade_notes(
    releases: Releases, tmp_path: Path
):
    """A generated file the previous release rendered and the newest does not (renamed or
    removed, samples under model/ included) is named, as `path`, in the upgrade notes of the
    newest release's CHANGELOG.md section, where Copier's message after an update sends
    the team."""
    section = (TEMPLATE_ROOT / "CHANGELOG.md").read_text().split("\n## ")[1]
    assert section.startswith(releases.newest), section[:40]
    notes = section.partition("### Upgrade notes")[2]
    previous = releases.versions[-2]
    for n, combination in enumerate(NOTES_COVERAGE):
        old = fresh_render(releases, combination.answers, tmp_path / f"old{n}", previous)
        new = fresh_render(releases, combination.answers, tmp_path / f"new{n}")
        gone = sorted(set(old) - set(new))
        assert [p for p in gone if f"`{p}`" not in notes] == [], combination.id
