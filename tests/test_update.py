"""Stage: `copier update` as a team lives it, through the template's tagged releases.

Each scenario copies a project from a release, commits it, makes the same team edits (their
own model bytes, a dependency, Kubernetes resources, a route, a README section, a module),
commits, and updates. Afterwards every file is what a fresh render of the new release and
answers gives, with the team's edits applied to it; model/ is byte for byte the team's; no
.rej file exists; and wherever Copier could not merge an edit, the markers it left are found
by `git diff --check` and by the generated pre-commit hook.
"""

import difflib
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from combinations import ALL, TEMPLATE_ROOT, Combination
from releases import Releases, commit_all, copier, copy_project, git, tree
from updates import (
    check_updated,
    conflicted,
    edit_project,
    fresh_render,
    pre_commit_finds_markers,
    team_edits,
    update,
)


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
    # A booster takes scikit-learn's resources: the team's memory limit stands.
    "sklearn-to-xgboost": ({}, {"ml_framework": "xgboost"}, set()),
    "xgboost-to-sklearn": ({"ml_framework": "xgboost"}, {"ml_framework": "sklearn"}, set()),
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
