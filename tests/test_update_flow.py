"""Stage: the scheduled update flow, as a project's workflow runs it.

scripts/template_update.py puts a new release on a branch with the pull request's title
and body; the workflow's next step pushes the branch and opens the pull request. Each runs
for real, against releases made from this repository's history plus a synthetic next one,
with a bare repository standing in for GitHub's git and tests/fake_gh.py for its CLI.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from combinations import TEMPLATE_ROOT
from releases import (
    COPIER,
    GIT_ENV,
    NEXT_RELEASE_FILE,
    NEXT_RELEASE_LOCKED,
    commit_all,
    copy_project,
    git,
)
from updates import (
    check_updated,
    conflicted,
    edit_project,
    fresh_render,
    pre_commit_finds_markers,
    team_edits,
)


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


def test_an_update_over_lock_maintenance_takes_the_releases_lock_whole(
    next_release, tmp_path: Path
):
    """Renovate's weekly lock maintenance relocked requirements/ml.lock here, and the next
    release relocks the same hash block. A line merge of two locks is no lock: the update
    takes the release's (its .txt pins are the release's), leaves no marker, and the
    project's own check that each lock is what scripts/lock.py makes of its pins passes."""
    releases, version = next_release
    project = copy_project(releases, releases.newest, {}, tmp_path / "project")
    lock = project / "requirements" / "ml.lock"
    lines = lock.read_text().splitlines(keepends=True)
    block = next(i for i, line in enumerate(lines) if line.startswith(NEXT_RELEASE_LOCKED))
    lines[block + 2] = f"    --hash=sha256:{'0' * 64} \\\n"  # the hash a relock here wrote
    lock.write_text("".join(lines))
    commit_all(project, "chore(deps): lock file maintenance")
    outputs = run_update_script(project, tmp_path)
    assert outputs["conflicts"] == "0", (tmp_path / "body.md").read_text()
    release = fresh_render(releases, {}, tmp_path / "fresh", version)
    for path in sorted((project / "requirements").glob("*.lock")):
        name = path.relative_to(project).as_posix()
        assert path.read_bytes() == release[name], f"{name} is not the release's lock"
    checked = subprocess.run(
        [sys.executable, "-m", "pytest", "--noconftest", "-p", "no:cacheprovider", "-q",
         "tests/test_locks.py"],
        cwd=project, capture_output=True, text=True,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout
