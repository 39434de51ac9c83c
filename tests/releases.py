"""The template's releases in a scratch clone, and generated projects as a team keeps them.

The releases are CHANGELOG.md's: each heading `## X.Y.Z - DATE (COMMIT)` is tagged X.Y.Z on
that commit in a scratch clone of this repository; the heading `## X.Y.Z - unreleased` is
the working tree, committed on top and tagged too. Copier then copies and updates through
git tags exactly as it does from the published template.
"""

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from combinations import TEMPLATE_ROOT

COPIER = Path(sys.executable).with_name("copier")
# Commits in the scratch repositories: a fixed identity, none of the user's git settings.
GIT_ENV = {
    **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
    "GIT_AUTHOR_NAME": "Template Suite",
    "GIT_AUTHOR_EMAIL": "suite@example.com",
    "GIT_COMMITTER_NAME": "Template Suite",
    "GIT_COMMITTER_EMAIL": "suite@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}
# "## 0.3.0 - 2026-12-02 (bed1ac1)", or "## 0.4.0 - unreleased"
RELEASE_HEADING = re.compile(
    r"^## (\d+\.\d+\.\d+) - (?:\d{4}-\d{2}-\d{2} \(([0-9a-f]{7,40})\)|unreleased)$"
)


def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, capture_output=True, text=True)
    if done.returncode:
        raise AssertionError(f"git {' '.join(args)} failed in {cwd}:\n{done.stderr}")
    return done.stdout


def changelog_releases() -> list[tuple[str, str | None]]:
    """(version, commit) per CHANGELOG.md heading, newest first; commit None: unreleased."""
    lines = (TEMPLATE_ROOT / "CHANGELOG.md").read_text().splitlines()
    return [(m[1], m[2]) for m in map(RELEASE_HEADING.match, lines) if m]


@dataclass(frozen=True)
class Releases:
    """A scratch clone of the template with a tag per release."""

    repo: Path
    versions: list[str]  # oldest first; the last is the working tree

    @property
    def newest(self) -> str:
        return self.versions[-1]

    @property
    def oldest(self) -> str:
        return self.versions[0]


def make_releases(into: Path) -> Releases:
    git("clone", "--quiet", "--no-hardlinks", str(TEMPLATE_ROOT), str(into), cwd=into.parent)
    for stale in git("tag", "--list", cwd=into).split():
        git("tag", "--delete", stale, cwd=into)  # the CHANGELOG alone says what a release is
    versions = []
    for version, commit in reversed(changelog_releases()):
        if commit is None:
            commit = commit_working_tree(into, version)
        elif subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=into).returncode:
            raise AssertionError(
                f"release {version}'s commit {commit} (CHANGELOG.md) is not in this clone's "
                "history: the update tests need the template's full history, not a shallow clone"
            )
        git("tag", version, commit, cwd=into)
        versions.append(version)
    if changelog_releases()[0][1] is not None:
        # No unreleased heading: then the checkout must be the newest release, or the
        # update stage would test a release instead of the template in front of it.
        commit_working_tree(into, "check", commit=False)
        template = ["copier.yml", "template", "includes"]
        if git("diff", "--cached", "--stat", versions[-1], "--", *template, cwd=into).strip():
            raise AssertionError(
                f"the template changed since release {versions[-1]}: add a "
                "'## X.Y.Z - unreleased' heading to CHANGELOG.md for what is coming"
            )
    return Releases(into, versions)


def commit_working_tree(repo: Path, version: str, commit: bool = True) -> str:
    """The template as it is in this checkout, committed in the scratch clone (or only
    copied there, with commit=False)."""
    for part in ("copier.yml", "template", "includes"):
        target, source = repo / part, TEMPLATE_ROOT / part
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.exists():
            shutil.copy2(source, target)
    git("add", "--all", cwd=repo)
    if commit:
        git("commit", "--quiet", "--allow-empty", "-m", f"Release candidate {version}", cwd=repo)
    return git("rev-parse", "HEAD", cwd=repo).strip()


def copier(*args: str, cwd: Path, copier_bin: Path = COPIER) -> subprocess.CompletedProcess:
    """The Copier CLI as a user runs it; fails the test with its output on a non-zero exit."""
    done = subprocess.run(
        [str(copier_bin), *args], cwd=cwd, env=GIT_ENV, capture_output=True, text=True
    )
    if done.returncode:
        raise AssertionError(f"copier {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
    return done


def data_args(answers: dict) -> list[str]:
    return [f"--data={key}={value}" for key, value in answers.items()]


def render_release(releases: Releases, version: str, answers: dict, into: Path) -> Path:
    """`copier copy --defaults` at a release, with `answers` given by --data."""
    copier("copy", "--defaults", "--quiet", f"--vcs-ref={version}", *data_args(answers),
           str(releases.repo), str(into), cwd=into.parent)  # fmt: skip
    return into


def copy_project(releases: Releases, version: str, answers: dict, into: Path) -> Path:
    """`copier copy` at a release, committed as a team's first commit."""
    render_release(releases, version, answers, into)
    git("init", "--quiet", "--initial-branch=main", cwd=into)
    commit_all(into, "Generated from ml-docker-template")
    return into


def commit_all(project: Path, message: str) -> None:
    git("add", "--all", cwd=project)
    git("commit", "--quiet", "--allow-empty", "-m", message, cwd=project)


def tree(root: Path, under: str = "") -> dict[str, bytes]:
    """Every file below root (or root/under) by relative path, .git left out."""
    base = root / under if under else root
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(base.rglob("*"))
        if path.is_file() and ".git" not in path.relative_to(root).parts
    }


# The synthetic release after the newest rewrites this file's first line (its docstring),
NEXT_RELEASE_FILE = "template/src/{{package_name}}/errors.py"
# and raises the autoscaler's ceiling (CPU builds) in this one.
NEXT_RELEASE_HPA = "template/k8s/base/horizontalpodautoscaler.yaml.jinja"
# and relocks the default answers' ML layer in this one: numpy loses one of its hashes.
NEXT_RELEASE_LOCK = "includes/locks/py3.14/sklearn/ml.lock"
NEXT_RELEASE_LOCKED = "numpy=="
# The generated README's last line: teams add their sections after it.
README_FOOTER = "<!-- Your team's own sections go below this line"


def add_next_release(releases: Releases) -> str:
    """A patch release on top of the newest, for updates from the newest: it changes the
    first line of NEXT_RELEASE_FILE, so a team edit of that line must conflict, raises
    maxReplicas in NEXT_RELEASE_HPA, drops the second hash of NEXT_RELEASE_LOCKED's block
    in NEXT_RELEASE_LOCK (a relock's change, its .txt untouched), and adds a paragraph at
    the end of the README, just above the footer teams write below."""
    major, minor, patch = map(int, releases.newest.split("."))
    version = f"{major}.{minor}.{patch + 1}"
    path = releases.repo / NEXT_RELEASE_FILE
    first, rest = path.read_text().split("\n", 1)
    path.write_text(first.replace('"""', '"""Revised: ', 1) + "\n" + rest)
    hpa = releases.repo / NEXT_RELEASE_HPA
    assert "  maxReplicas: 10\n" in hpa.read_text()
    hpa.write_text(hpa.read_text().replace("  maxReplicas: 10\n", "  maxReplicas: 12\n"))
    lock = releases.repo / NEXT_RELEASE_LOCK
    lines = lock.read_text().splitlines(keepends=True)
    block = next(i for i, line in enumerate(lines) if line.startswith(NEXT_RELEASE_LOCKED))
    assert lines[block + 2].strip().startswith("--hash="), lines[block : block + 3]
    del lines[block + 2]
    lock.write_text("".join(lines))
    readme = releases.repo / "template" / "README.md.jinja"
    text = readme.read_text()
    assert README_FOOTER in text, "the generated README lost its footer"
    added = "A paragraph new in this release.\n\n"
    readme.write_text(text.replace(README_FOOTER, added + README_FOOTER))
    git("commit", "--quiet", "--all", "-m", f"Release {version}", cwd=releases.repo)
    git("tag", version, cwd=releases.repo)
    return version
