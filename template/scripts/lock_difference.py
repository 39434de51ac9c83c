"""The entries of one lock file that another does not hold: what a layer adds on its own.

    python scripts/lock_difference.py requirements/serving.lock requirements/ml.lock

serving.lock repeats ml.lock's packages at their versions (scripts/lock.py). The
Dockerfile installs the web stack in a stage of its own, apart from the ML framework, from
this difference, and copies it over the ML layer. Only the entries are written (each
requirement with its hashes), no comments: every ML framework whose lock leaves the same
web stack gives the same bytes, so Docker builds that stage once for all of them.
"""

import re
import sys
from pathlib import Path

# A requirement line starts at the left margin; its hashes and comments are indented.
ENTRY = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==")


def entries(lock: Path) -> dict[str, list[str]]:
    """{normalized package name: its requirement line and hash lines} of a lock file."""
    found: dict[str, list[str]] = {}
    lines: list[str] | None = None
    for line in lock.read_text().splitlines():
        if match := ENTRY.match(line):
            name = re.sub(r"[-_.]+", "-", match["name"]).lower()
            lines = found.setdefault(name, [])
            lines.append(line)
        elif lines is not None and line.strip().startswith("--hash="):
            lines.append(line)
    return found


def main(lock: str, below: str) -> None:
    installed = entries(Path(below))
    for name, lines in entries(Path(lock)).items():
        if name not in installed:
            print("\n".join(lines))


if __name__ == "__main__":
    main(*sys.argv[1:])
