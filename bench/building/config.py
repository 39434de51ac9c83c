"""The build benchmark's places, Dockerfiles, targets and its two helpers: a log line
and a command whose failure stops the run with its output."""

import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
BENCH = REPO / "bench"
WORK = BENCH / ".work" / "build"
COPIER = REPO / ".venv" / "bin" / "copier"
DOCKERFILES = {  # name -> Dockerfile, .dockerignore (None: the render's own)
    "generated": (None, None),
    "docker-init": (BENCH / "build" / "docker-init.Dockerfile", BENCH / "build" / "dockerignore"),
    "naive": (BENCH / "build" / "naive.Dockerfile", BENCH / "build" / "dockerignore"),
}
# A serving dependency the template does not pin, for the dependency-change rebuild.
NEW_SERVING_DEPENDENCY = "orjson==3.11.5"
SIZE_TARGET = 0.60  # the generated image's bytes over the base, against docker init's
SOURCE_REBUILD_TARGET_S = 2.0
READY_SLOWER_BY_AT_MOST = 1.10  # ready time against docker init's image: noise allowance
PORT = 18740


def log(message: str) -> None:
    print(f"build-bench {time.strftime('%H:%M:%S')}: {message}", file=sys.stderr, flush=True)


def sh(*command, cwd: Path | None = None, log_to: Path | None = None) -> str:
    out = log_to.open("w") if log_to else subprocess.PIPE
    try:
        done = subprocess.run(
            [str(c) for c in command], cwd=cwd, stdout=out, stderr=subprocess.STDOUT, text=True
        )
    finally:
        if log_to:
            out.close()
    text = log_to.read_text() if log_to else done.stdout
    if done.returncode:
        raise RuntimeError(f"{' '.join(map(str, command))} failed:\n{text[-3000:]}")
    return text
