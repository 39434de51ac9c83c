#!/usr/bin/env python3
"""Serving benchmark: the generated FastAPI and Flask images, on /predict and on the Open
Inference Protocol's infer, against MLflow, BentoML, LitServe, MLServer and Triton.

    python bench/run.py [--ml sklearn] [--workers 1] [--duration 15] [--servers ...]

Sets up the venvs, renders and builds both generated images, saves the render's sample
model for each server, then serves each in turn on 127.0.0.1 and loads it with wrk (the
servers with settings to choose get a short run of each first). Prints the tables and a
line per target. Exit status: 0 all targets met, 1 some target not met, 2 a server failed.
Work files and raw wrk output go to bench/.work/. See README.md; the parts are in serving/.
"""

import argparse
import json
import sys

from serving.config import (
    ALL_SERVERS,
    GENERATED,
    ML_FRAMEWORKS,
    OIP_PEERS,
    SERVERS_FOR,
    WORK,
    server_of,
)
from serving.prepare import (
    ensure_tools,
    ensure_venv,
    mlflow_model,
    reference_predictions,
    render_and_build,
    versions,
)
from serving.report import (
    overload_table,
    profile_summary,
    sweep_table,
    throughput_table,
    turns_table,
)
from serving.runs import best_settings, in_turns, measure, overload
from serving.servers import CANDIDATES, Bench
from serving.targets import targets


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ml", choices=ML_FRAMEWORKS, default="sklearn",
                        help="the sample served: the render's for this ML framework")  # fmt: skip
    parser.add_argument("--workers", type=int, default=1, help="server workers, all servers")
    parser.add_argument("--duration", type=int, default=15, help="seconds per wrk run")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of unrecorded load first")
    parser.add_argument("--sweep-duration", type=int, default=6,
                        help="seconds per setting tried for an anchor at its best")  # fmt: skip
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--overload-connections", type=int, default=256)
    parser.add_argument("--overload-duration", type=int, default=10)
    parser.add_argument("--no-overload", action="store_true", help="skip the overload runs")
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds in turns: the generated endpoints and the protocol's "
                             "servers at their best, a run each per round")  # fmt: skip
    parser.add_argument("--turn-duration", type=int, default=5, help="seconds per run in turns")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy the generated services during their predict runs")  # fmt: skip
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--port", type=int, default=18080, help="loopback port for each server")
    parser.add_argument("--servers", nargs="+", choices=ALL_SERVERS,
                        help="default: all that serve the --ml sample")  # fmt: skip
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra setting for the generated containers (e.g. LOG_LEVEL=warning)",
    )
    args = parser.parse_args()
    args.servers = args.servers or SERVERS_FOR[args.ml]
    if others := set(args.servers) - set(SERVERS_FOR[args.ml]):
        parser.error(f"{', '.join(sorted(others))} serve(s) no {args.ml} sample here")

    (WORK / "results").mkdir(parents=True, exist_ok=True)
    ensure_tools()
    pythons = {"anchors": ensure_venv("anchors")}
    peers = {name for name in OIP_PEERS if name in args.servers}
    if args.ml != "sklearn":
        peers.add("mlserver")  # its venv has the boosters' libraries, for their reference answers
    pythons.update({name: ensure_venv(name) for name in sorted(peers)})
    images, model = {}, None
    frameworks = {server_of(s) for s in args.servers if s in GENERATED}
    for framework in sorted(frameworks) or ["fastapi"]:
        target, image = render_and_build(framework, args.ml)
        if framework in frameworks:
            images[framework] = image
        metadata = json.loads((target / "model" / "metadata.json").read_text())
        model = model or target / "model" / metadata["artifact"]
        other = target / "model" / metadata["artifact"]
        if other.read_bytes() != model.read_bytes():
            raise SystemExit(f"{other} differs from {model}: the renders disagree")
    mlflow_dir = mlflow_model(model) if "mlflow" in args.servers else None
    example = json.loads((model.parent / "example-request.json").read_text())["instances"]
    expected = reference_predictions(args.ml, model.parent, example)
    bench = Bench(args, images, model, metadata["name"], mlflow_dir, example, expected)
    info = versions(pythons)

    sweeps = {name: best_settings(bench, name) for name in args.servers if name in CANDIDATES}
    results = [measure(bench, name, sweeps[name][0] if name in sweeps else {})
               for name in args.servers]  # fmt: skip
    # The generated endpoints and the protocol's servers, at their best, compared in turns.
    in_round = [name for name in (*GENERATED, *OIP_PEERS) if name in args.servers]
    turns = None
    if len(in_round) > 1 and args.rounds:
        turns = in_turns(bench, in_round, {name: sweeps[name][0] for name in sweeps})
    loads = []
    if not args.no_overload:
        loads = [overload(bench, r.name, r.settings) for r in results]

    # The anchors at their best are compared at their fastest run, the settings sweep's short
    # runs included: on a noisy machine that is the anchor's best showing, not its average.
    anchor_runs = results + [r for _, tried in sweeps.values() for r in tried if not r.error]
    throughput_table(results, anchor_runs, args, info)
    if sweeps:
        sweep_table({name: tried for name, (_, tried) in sweeps.items()}, args)
    if turns:
        turns_table(turns, args)
    if loads:
        overload_table(loads, args)
    if args.profile:
        for name in GENERATED:
            if name in args.servers:
                profile_summary(name, WORK / f"profile-{name}-{args.workers}w.txt")
    return targets(results, anchor_runs, turns, loads, args)


if __name__ == "__main__":
    sys.exit(main())
