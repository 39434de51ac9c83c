"""Bring this repository up to the template's newest release, on a branch, ready for review.

    python scripts/template_update.py [--branch-prefix P] [--body-file F] [--github-output F]

What .github/workflows/template-update.yaml runs on its schedule, and what anyone can run
by hand in a clean checkout. Asks Copier whether a newer release of the template exists
(`copier check-update`); if so, updates to it on a new branch with `copier update
--defaults --conflict inline` (no --trust: the template runs no tasks), commits the result
whatever it is, and writes the pull request's title and body. Conflicts do not stop it:
they are committed with their markers, listed in the body, and the title says so, so a
person resolves them on the branch. Copier merges a release's change into the file at the
path the template renders; the body names every file the release changed that this
repository no longer has at that path (renamed, moved or deleted here), whose change
nothing merged. Opening the pull request is left to the caller.

Exit status: 0 up to date or updated (see the outputs), 1 something failed.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path


# Only git and copier run, found on PATH as a user's shell finds them (S603, S607).
def run(*command: str) -> str:
    done = subprocess.run(command, capture_output=True, text=True)  # noqa: S603
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


def conflicts() -> list[str]:
    """Files with conflict markers (git diff --check), and any .rej Copier wrote."""
    diff = ["git", "-c", "core.quotePath=false", "diff", "HEAD", "--check"]
    check = subprocess.run(diff, capture_output=True, text=True)  # noqa: S603
    if check.returncode not in (0, 2):  # 2: it found markers or whitespace errors
        raise SystemExit(f"git diff --check failed ({check.returncode}):\n{check.stderr}")
    marked = {
        line.split(":", 1)[0] for line in check.stdout.splitlines() if "conflict marker" in line
    }
    untracked = run("git", "ls-files", "--others", "--exclude-standard").splitlines()
    return sorted(marked | {path for path in untracked if path.endswith(".rej")})


ANSWERS = ".copier-answers.yml"


def release_changes(current: str, latest: str) -> list[str]:
    """The files the release changed for this repository's answers: both releases rendered
    with them and compared, file by file (`model/` is never updated: left out)."""
    source = next(
        line.split(":", 1)[1].strip().strip("'\"")
        for line in Path(ANSWERS).read_text().splitlines()
        if line.startswith("_src_path:")
    )
    trees = []
    with tempfile.TemporaryDirectory() as work:
        for version in (current, latest):
            into = Path(work) / version
            run("copier", "copy", "--defaults", "--quiet", "--data-file", ANSWERS,
                "--vcs-ref", version, source, str(into))  # fmt: skip
            files = (path for path in into.rglob("*") if path.is_file())
            trees.append({path.relative_to(into).as_posix(): path.read_bytes() for path in files})
    old, new = trees
    changed = {path for path in old.keys() & new.keys() if old[path] != new[path]}
    return sorted(path for path in changed if not path.startswith("model/"))


def body(current: str, latest: str, conflicted: list[str], unmerged: list[str]) -> str:
    lines = [
        f"Updates this repository from ml-docker-template {current} to {latest} with "
        "`copier update --defaults --conflict inline`.",
        "",
        "Read the template's CHANGELOG.md for the upgrade notes of each release in between. "
        "`model/` is never touched by an update.",
        "",
    ]
    if unmerged:
        lines += [
            f"**{len(unmerged)} file(s) the release changed are not in this repository at "
            "that path**, so nothing merged their change: if you renamed, moved or split one, "
            "port the release's change to it by hand (the template's diff between the two "
            "releases shows it).",
            "",
            *[f"- `{path}`" for path in unmerged],
            "",
        ]
    if conflicted:
        lines += [
            f"**{len(conflicted)} file(s) need a person**: the template changed lines this "
            "repository changed too. Resolve the markers (`<<<<<<< before updating`) on this "
            "branch; `git diff --check` and the pre-commit hook find them.",
            "",
            *[f"- `{path}`" for path in conflicted],
        ]
    elif unmerged:
        lines.append("Copier merged every other change: no conflicts.")
    else:
        lines.append("Copier merged every change: no conflicts.")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--branch-prefix", default="template-update/")
    parser.add_argument(
        "--body-file", type=Path, default=Path(tempfile.gettempdir()) / "template-update.md",
        help="where the pull request's body is written (outside the repository)",
    )  # fmt: skip
    parser.add_argument("--github-output", type=Path, help="append name=value outputs here")
    args = parser.parse_args()

    if run("git", "status", "--porcelain"):
        raise SystemExit("the working tree has changes: commit or stash them first")
    check = json.loads(run("copier", "check-update", "--output-format", "json"))
    outputs = {"updated": "false", "version": check["latest_version"]}
    if check["update_available"]:
        current, latest = check["current_version"], check["latest_version"]
        branch = f"{args.branch_prefix}{latest}"
        unmerged = [path for path in release_changes(current, latest) if not Path(path).exists()]
        run("git", "switch", "--force-create", branch)  # a rerun starts the branch afresh
        try:
            run("copier", "update", "--defaults", "--conflict", "inline", "--vcs-ref", latest)
        except SystemExit:
            # Leave the checkout as it was found: clean, on the branch it started from.
            run("git", "reset", "--hard", "--quiet")
            run("git", "clean", "-d", "--force", "--quiet")
            run("git", "switch", "--quiet", "-")
            raise
        conflicted = conflicts()
        title = f"Update from ml-docker-template {current} to {latest}"
        if conflicted:
            title = f"[{len(conflicted)} conflict(s)] {title}"
        run("git", "add", "--all")
        # --no-verify: the pre-commit hook would refuse the conflict markers, which are
        # committed on purpose, for a person to resolve on this branch.
        run("git", "commit", "--quiet", "--no-verify", "--message", title)
        args.body_file.write_text(body(current, latest, conflicted, unmerged))
        outputs |= {
            "updated": "true",
            "branch": branch,
            "title": title,
            "conflicts": str(len(conflicted)),
            "body-file": str(args.body_file),
        }
        print(f"{title}: committed on {branch}")
    else:
        print(f"up to date with ml-docker-template {check['current_version']}")
    if args.github_output:
        with args.github_output.open("a") as out:
            out.writelines(f"{name}={value}\n" for name, value in outputs.items())
    return 0


if __name__ == "__main__":
    sys.exit(main())
