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
nothing merged. Locks are never merged: each requirements/*.lock becomes the lock its .txt
files ask for (settle_locks). Opening the pull request is left to the caller.

Exit status: 0 up to date or updated (see the outputs), 1 something failed.
"""

import argparse
import json
import runpy
import shutil
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
MARKER = b"<<<<<<< "


def rendered(version: str) -> dict[str, bytes]:
    """Every file the release renders for this repository's answers, by path."""
    source = next(
        line.split(":", 1)[1].strip().strip("'\"")
        for line in Path(ANSWERS).read_text().splitlines()
        if line.startswith("_src_path:")
    )
    with tempfile.TemporaryDirectory() as work:
        into = Path(work) / version
        run("copier", "copy", "--defaults", "--quiet", "--data-file", ANSWERS,
            "--vcs-ref", version, source, str(into))  # fmt: skip
        files = (path for path in into.rglob("*") if path.is_file())
        return {path.relative_to(into).as_posix(): path.read_bytes() for path in files}


def release_changes(old: dict[str, bytes], new: dict[str, bytes]) -> list[str]:
    """The files the release changed, between two renders (`model/` is never updated)."""
    changed = {path for path in old.keys() & new.keys() if old[path] != new[path]}
    return sorted(path for path in changed if not path.startswith("model/"))


def committed(commit: str, path: str) -> bytes | None:
    """The file at `path` as `commit` has it; None where it had none."""
    show = ["git", "show", f"{commit}:{path}"]
    shown = subprocess.run(show, capture_output=True)  # noqa: S603
    return shown.stdout if shown.returncode == 0 else None


def settle_locks(before: str, release: dict[str, bytes]) -> tuple[list[str], list[str]]:
    """Make each requirements/LAYER.lock the lock its .txt files ask for, never a merge.

    A lock's hash blocks change on both sides between releases (the release relocks,
    Renovate's lock maintenance relocks here), and Copier's line merge of two locks is no
    lock. A layer whose .txt files (its own and those below it) are all the release's
    takes the release's lock; all this repository's, keeps its own; a mix of both (a pin
    added here, another raised by the release) is relocked by scripts/lock.py, starting
    from the release's lock. Returns (layers relocked, layers whose .txt has conflicts:
    their locks are the release's until a person resolves them and relocks).
    """
    layers = runpy.run_path("scripts/lock.py")["LAYERS"]
    relock, waiting = [], []
    for layer, below in layers.items():
        lock = f"requirements/{layer}.lock"
        txts = [f"requirements/{name}.txt" for name in [*below, layer]]
        merged = {txt: Path(txt).read_bytes() for txt in txts}
        if any(MARKER in text for text in merged.values()):
            waiting.append(layer)
            Path(lock).write_bytes(release[lock])
        elif all(merged[txt] == release.get(txt) for txt in txts):
            Path(lock).write_bytes(release[lock])
        elif all(merged[txt] == committed(before, txt) for txt in txts):
            Path(lock).write_bytes(committed(before, lock) or release[lock])
        else:
            relock.append(layer)
            Path(lock).write_bytes(release[lock])
    if relock:
        if shutil.which("uv") is None:
            raise SystemExit(f"relocking {', '.join(relock)} needs uv: pip install uv")
        # All layers, in order: a layer's lock is made under the locks below it.
        run(sys.executable, "scripts/lock.py")
    return relock, waiting


def body(
    current: str, latest: str, conflicted: list[str], unmerged: list[str],
    relocked: list[str], waiting: list[str],
) -> str:  # fmt: skip
    lines = [
        f"Updates this repository from ml-docker-template {current} to {latest} with "
        "`copier update --defaults --conflict inline`.",
        "",
        "Read the template's CHANGELOG.md for the upgrade notes of each release in between. "
        "`model/` is never touched by an update.",
        "",
        "Each `requirements/*.lock` is the lock its `.txt` files ask for, never a merge of "
        "two: the release's, this repository's, or, where both changed the pins, relocked "
        "with `scripts/lock.py`"
        + (f" ({', '.join(relocked)})." if relocked else " (none needed it)."),
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
        if waiting:
            locks = ", ".join(f"`requirements/{layer}.lock`" for layer in waiting)
            lines += [
                "",
                f"{locks} stay the release's until the `.txt` conflicts above are resolved: "
                "then run `python scripts/lock.py` and commit the locks it writes.",
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
        old, new = rendered(current), rendered(latest)
        unmerged = [path for path in release_changes(old, new) if not Path(path).exists()]
        before = run("git", "rev-parse", "HEAD").strip()
        run("git", "switch", "--force-create", branch)  # a rerun starts the branch afresh
        try:
            run("copier", "update", "--defaults", "--conflict", "inline", "--vcs-ref", latest)
            relocked, waiting = settle_locks(before, new)
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
        args.body_file.write_text(body(current, latest, conflicted, unmerged, relocked, waiting))
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
