#!/usr/bin/env python3
"""Build benchmark: the generated Dockerfile next to docker init's and a naive one.

    python3 bench/build.py [--frameworks sklearn onnxruntime pytorch] [--ready-runs 5]

For the default render it builds three images from the same project: the generated
Dockerfile, the single-stage Dockerfile `docker init` writes (build/docker-init.Dockerfile)
and a naive one that copies everything before installing (build/naive.Dockerfile). Each
gets a cold build, a rebuild after a source-only change, a rebuild after a change to the
serving requirements, its bytes over the base image, and its time from `docker run` to
ready. Then each ML framework's render is built with the generated and the docker-init
Dockerfile for their sizes. Prints the tables and a line per target; exit status 0 when
every target is met, 1 otherwise. Work files and build logs go to bench/.work/build/.

A cold build starts with no layer cache (`--no-cache`) and no pip cache: the engine's
cache mounts are pruned first (the suite's next build downloads its wheels again).
The parts are in building/.
"""

import argparse
import sys

from building.config import DOCKERFILES, REPO, WORK, log, sh
from building.images import render
from building.measures import framework_sizes, measure, time_to_ready
from building.report import report, targets


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frameworks", nargs="*", default=["sklearn", "onnxruntime", "pytorch"])
    parser.add_argument("--ready-runs", type=int, default=5)
    parser.add_argument("--sizes-only", action="store_true", help="only the frameworks' sizes")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    sh("make", "-C", REPO, ".venv/.installed")
    sh("bash", REPO / "tests/infra/docker-engine.sh", "start")
    default = render("default", {})
    base = f"python:{default.python}-slim"
    log(sh("bash", REPO / "tests/infra/base-images.sh", default.python).strip())
    rows = []
    if not args.sizes_only:
        rows = [measure(default, name, base) for name in DOCKERFILES]
        time_to_ready(rows, args.ready_runs)
    sizes = framework_sizes(args.frameworks, default)
    report(default, base, rows, sizes, args.ready_runs)
    return targets(rows) if rows else 0


if __name__ == "__main__":
    sys.exit(main())
