#!/usr/bin/env python3
"""Serve directories of wheels as a PEP 503 simple index on 127.0.0.1.

    python wheel-index.py [DIR...]      prints the index URL, serves until killed
    serve(dirs) -> (url, popen)         same from Python; stop with popen.terminate()

DIRs default to pip's find-links folders (`pip config list`, PIP_FIND_LINKS).
Builds reach the index with `docker build --network host` and
`pip install --extra-index-url URL ...`.
"""

from __future__ import annotations

import atexit
import html
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path


def pip_find_links() -> list[str]:
    out = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    values = [line.split("=", 1)[1] for line in out.splitlines() if ".find-links=" in line]
    values.append(os.environ.get("PIP_FIND_LINKS", ""))
    dirs = []
    for value in values:
        for item in shlex.split(value):  # values are quoted, may hold several
            path = item.removeprefix("file://")
            if os.path.isdir(path) and path not in dirs:
                dirs.append(path)
    return dirs


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def write_index(dirs: list[str], root: Path) -> None:
    projects: dict[str, list[str]] = {}
    (root / "files").mkdir()
    for d in dirs:
        for wheel in sorted(Path(d).glob("*.whl")):
            link = root / "files" / wheel.name
            if not link.exists():
                link.symlink_to(wheel.resolve())  # http.server follows symlinks
                projects.setdefault(normalize(wheel.name.split("-")[0]), []).append(wheel.name)

    def page(links: list[tuple[str, str]]) -> str:
        body = "\n".join(f'<a href="{html.escape(h)}">{html.escape(t)}</a><br>' for h, t in links)
        return f"<!DOCTYPE html>\n<html><body>\n{body}\n</body></html>\n"

    simple = root / "simple"
    simple.mkdir()
    (simple / "index.html").write_text(page([(f"{p}/", p) for p in sorted(projects)]))
    for project, wheels in projects.items():
        (simple / project).mkdir()
        (simple / project / "index.html").write_text(
            page([(f"../../files/{w}", w) for w in wheels])
        )


PREFERRED_PORT = 38741


def serve(dirs: list[str] | None = None) -> tuple[str, subprocess.Popen]:
    """Write the index to a temp dir and serve it; returns (URL of /simple, server)."""
    dirs = pip_find_links() if dirs is None else [str(d) for d in dirs]
    root = Path(tempfile.mkdtemp(prefix="wheel-index-"))
    atexit.register(shutil.rmtree, root, True)
    write_index(dirs, root)
    # The URL becomes a build argument, so a fixed port keeps builds cached from run to
    # run; where it is taken, port 0 lets the server pick a free one.
    for port in (PREFERRED_PORT, 0):
        proc = subprocess.Popen(
            [
                sys.executable,
                "-u",
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                "--directory",
                str(root),
                str(port),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        line = proc.stdout.readline()  # "Serving HTTP on 127.0.0.1 port N (http://...) ..."
        match = re.search(r" port (\d+)", line)
        if match:
            break
        proc.kill()
        proc.wait()
    else:
        raise RuntimeError(f"http.server did not start: {line!r}")
    return f"http://127.0.0.1:{match.group(1)}/simple", proc


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # so finally/atexit clean up
    url, proc = serve(sys.argv[1:] or None)
    print(url, flush=True)
    try:
        proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
