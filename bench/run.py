#!/usr/bin/env python3
"""Serving benchmark: the generated FastAPI and Flask images against MLflow and BentoML.

    python bench/run.py [--workers 1] [--duration 15] [--connections 32] [--servers ...]

Sets up bench/.venv, renders and builds both generated images, saves the render's sample
model for MLflow and BentoML, then serves each in turn on 127.0.0.1 and loads it with wrk.
Prints one table and a line per target. Exit status: 0 all targets met, 1 some target not
met, 2 a server failed. Work files and raw wrk output go to bench/.work/. See README.md.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
WORK = BENCH / ".work"
VENV = BENCH / ".venv"
VPY = VENV / "bin" / "python"
ROW_BODY = '{"instances": [[5.1, 3.5, 1.4, 0.2]]}'
ALL_SERVERS = ["fastapi", "flask", "mlflow", "bentoml"]
GENERATED = {"fastapi", "flask"}
READY_TIMEOUT_S = 180
STOP_TIMEOUT_S = 20


def log(message: str) -> None:
    print(f"bench {time.strftime('%H:%M:%S')}: {message}", file=sys.stderr, flush=True)


def sh(*command, log_to: Path | None = None, **kwargs) -> subprocess.CompletedProcess:
    """Run a command to completion; its output goes to `log_to` (or is captured)."""
    if log_to:
        with log_to.open("w") as out:
            done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, **kwargs)
        if done.returncode:
            tail = log_to.read_text()[-3000:]
            raise RuntimeError(f"{' '.join(map(str, command))} failed ({log_to}):\n{tail}")
        return done
    return subprocess.run(command, check=True, capture_output=True, text=True, **kwargs)


# ---------------------------------------------------------------- set-up


def ensure_tools() -> None:
    if not shutil.which("wrk"):
        log("installing wrk (Debian package)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], env=env).returncode:
            sh("apt-get", "update", "-qq")
            sh("apt-get", "install", "-y", "-qq", "wrk", env=env)
    # The template repo's own set-up: a no-op where Docker with buildx already works.
    sh("bash", "tests/infra/docker-engine.sh", "start", cwd=REPO)


def ensure_venv() -> None:
    requirements = BENCH / "requirements.txt"
    stamp = VENV / ".installed"
    if stamp.exists() and stamp.stat().st_mtime >= requirements.stat().st_mtime:
        return
    log(f"setting up {VENV.relative_to(REPO)} (mlflow, bentoml, copier; a few minutes)")
    if not VPY.exists():
        sh(sys.executable, "-m", "venv", VENV)
    sh(VPY, "-m", "pip", "install", "--quiet", "-r", requirements, log_to=WORK / "pip.log")
    stamp.touch()


def render_and_build(framework: str) -> tuple[Path, str]:
    """Render the template with defaults and this web framework; build its image."""
    target = WORK / f"render-{framework}"
    shutil.rmtree(target, ignore_errors=True)
    log(f"rendering and building the generated {framework} service")
    copy = "copy --defaults --quiet --vcs-ref HEAD --data".split()
    sh(VENV / "bin" / "copier", *copy, f"web_framework={framework}", REPO, target,
       log_to=WORK / f"render-{framework}.log")  # fmt: skip
    answers = (target / ".copier-answers.yml").read_text()
    python = next(
        line.split(":", 1)[1].strip().strip("'\"")
        for line in answers.splitlines()
        if line.startswith("python_version:")
    )
    sh("bash", "tests/infra/base-images.sh", python, cwd=REPO, log_to=WORK / "base-images.log")
    tag = f"ml-docker-template-bench-{framework}:latest"
    build = "docker build --progress plain --network host -t".split()
    sh(*build, tag, target, log_to=WORK / f"build-{framework}.log")
    return target, tag


def prepare_anchors(model: Path) -> Path:
    log("saving the same model.joblib as an MLflow model")
    mlflow_dir = WORK / "mlflow-model"
    sh(VPY, BENCH / "mlflow_model.py", model, mlflow_dir, log_to=WORK / "mlflow-model.log")
    return mlflow_dir


def reference_predictions(model: Path, rows: list) -> list:
    code = (
        "import json, sys, joblib, numpy as np; m = joblib.load(sys.argv[1]); "
        "print(json.dumps(m.predict(np.asarray(json.loads(sys.argv[2]), 'float64')).tolist()))"
    )
    return json.loads(sh(VPY, "-c", code, model, json.dumps(rows)).stdout)


def versions() -> dict:
    code = (
        "import importlib.metadata as m, json; print(json.dumps({p: m.version(p) for p in "
        "['mlflow', 'bentoml', 'scikit-learn', 'uvicorn']}))"
    )
    return json.loads(sh(VPY, "-c", code).stdout)


# ---------------------------------------------------------------- processes and memory


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def start_time(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def cpu_probe_ms() -> float:
    """A fixed pure-Python loop: shows how fast this (virtual) CPU is right now."""
    started, total = time.perf_counter(), 0
    for i in range(2_000_000):
        total += i
    return (time.perf_counter() - started) * 1000


def tree_rss_bytes(root: int) -> int:
    """Sum of VmRSS over the process tree (shared pages count once per process)."""
    total = 0
    for pid in process_tree(root):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


class Container:
    """A generated image, run with --network host; stopped by its container id."""

    def __init__(self, name: str, image: str, port: int, workers: int, env: list) -> None:
        self.name = name
        settings = [f"PORT={port}", f"WORKERS={workers}", *env]
        run = ["docker", "run", "-d", "--network", "host", "--name", f"bench-{name}-{os.getpid()}"]
        env = [x for setting in settings for x in ("-e", setting)]
        self.cid = sh(*run, *env, image).stdout.strip()

    def root_pid(self) -> int:  # the container's PID 1 (gunicorn's master) as the host sees it
        return int(sh("docker", "inspect", "-f", "{{.State.Pid}}", self.cid).stdout)

    def alive(self) -> bool:
        state = sh("docker", "inspect", "-f", "{{.State.Running}}", self.cid).stdout
        return state.strip() == "true"

    def stop(self) -> None:
        subprocess.run(["docker", "stop", "-t", str(STOP_TIMEOUT_S), self.cid], capture_output=True)
        with (WORK / f"server-{self.name}.log").open("w") as out:
            subprocess.run(["docker", "logs", self.cid], stdout=out, stderr=subprocess.STDOUT)
        subprocess.run(["docker", "rm", "-f", self.cid], capture_output=True)


class Process:
    """An anchor's CLI in its own session; stopped by pid (SIGTERM, then SIGKILL leftovers)."""

    def __init__(self, name: str, command: list, env: dict, cwd: Path) -> None:
        self.log = (WORK / f"server-{name}.log").open("w")
        self.proc = subprocess.Popen(
            command,
            env={**os.environ, **env},
            cwd=cwd,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def root_pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        children = [(pid, start_time(pid)) for pid in process_tree(self.proc.pid)[1:]]
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid, started in children:  # workers that outlived their parent (same pid, same start)
            if started is not None and start_time(pid) == started:
                os.kill(pid, signal.SIGKILL)
        self.log.close()


# ---------------------------------------------------------------- the servers


@dataclass
class Spec:
    name: str
    predict_path: str
    ready_path: str
    health_path: str


SPECS = {
    "fastapi": Spec("fastapi", "/predict", "/readyz", "/healthz"),
    "flask": Spec("flask", "/predict", "/readyz", "/healthz"),
    "mlflow": Spec("mlflow", "/invocations", "/ping", "/ping"),
    "bentoml": Spec("bentoml", "/predict", "/readyz", "/livez"),
}


def start(name: str, args, images: dict, model: Path, mlflow_dir: Path):
    port, workers = args.port, args.workers
    if name in GENERATED:
        return Container(name, images[name], port, workers, args.env)
    path = f"{VENV / 'bin'}{os.pathsep}{os.environ['PATH']}"  # mlflow execs `uvicorn`
    if name == "mlflow":
        serve = "models serve --env-manager local --host 127.0.0.1".split()
        command = [VENV / "bin" / "mlflow", *serve, "-m", mlflow_dir, "--port", str(port),
                   "--workers", str(workers)]  # fmt: skip
        return Process(name, command, {"PATH": path}, WORK)
    # bento_service.py reads the model path and the worker count from the environment.
    serve = "serve bento_service:IrisClassifier --host 127.0.0.1".split()
    command = [VENV / "bin" / "bentoml", *serve, "--port", str(port)]
    env = {"PATH": path, "BENCH_MODEL": str(model), "BENCH_WORKERS": str(workers),
           "BENTOML_DO_NOT_TRACK": "True"}  # fmt: skip
    return Process(name, command, env, BENCH)


def http(url: str, body: str | None = None, timeout: float = 5) -> tuple[int, bytes]:
    data = body.encode() if body is not None else None
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def wait_ready(server, url: str, started: float) -> float:
    """Seconds from start until the readiness endpoint's first 200."""
    while time.monotonic() - started < READY_TIMEOUT_S:
        if not server.alive():
            raise RuntimeError("the server exited before it was ready")
        try:
            if http(url, timeout=2)[0] == 200:
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"not ready after {READY_TIMEOUT_S} s")


def wrk(args, url: str, seconds: int, body: str | None, label: str) -> dict:
    """One closed-loop wrk run; the summary comes from wrk.lua's done()."""
    command = ["wrk", "-t", str(args.wrk_threads), "-c", str(args.connections),
               "-d", f"{seconds}s", "--timeout", "10s", "--latency",
               "-s", str(BENCH / "wrk.lua"), url]  # fmt: skip
    env = {**os.environ, "BENCH_BODY": body or ""}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=seconds + 60)
    (WORK / "results" / f"{label}.txt").write_text(done.stdout + done.stderr)
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH_SUMMARY ")), None)
    if done.returncode or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr[-500:]}")
    summary = json.loads(line.split(" ", 1)[1])
    summary["rps"] = summary["requests"] / (summary["duration_us"] / 1e6)
    summary["socket_errors"] = sum(summary[k] for k in ("connect", "read", "write", "timeout"))
    return summary


@dataclass
class Result:
    name: str
    error: str = ""
    ready_s: float = 0.0
    predict: dict = field(default_factory=dict)
    health: dict = field(default_factory=dict)
    rss_peak: int = 0
    load: tuple = ()
    probe_ms: float = 0.0


def measure(
    name: str, args, images: dict, model: Path, mlflow_dir: Path, check_rows: list, expected: list
) -> Result:
    spec, port = SPECS[name], args.port
    base = f"http://127.0.0.1:{port}"
    result = Result(name, probe_ms=cpu_probe_ms())
    load_before = os.getloadavg()[0]
    server = None
    try:
        try:
            http(base + "/", timeout=1)
            raise RuntimeError(f"something already answers on 127.0.0.1:{port}")
        except OSError:
            pass  # nothing listens: the port is free
        log(f"{name}: starting on 127.0.0.1:{port} with {args.workers} worker(s)")
        started = time.monotonic()
        server = start(name, args, images, model, mlflow_dir)
        result.ready_s = wait_ready(server, base + spec.ready_path, started)
        status, answer = http(base + spec.predict_path, json.dumps({"instances": check_rows}))
        got = json.loads(answer).get("predictions") if status == 200 else None
        if got != expected:
            raise RuntimeError(f"predicted {status} {answer[:200]!r}, expected {expected}")
        log(f"{name}: ready after {result.ready_s:.2f} s, predictions match; warming up")
        wrk(args, base + spec.predict_path, args.warmup, ROW_BODY, f"{name}-warmup")

        samples: list[int] = []
        stop = threading.Event()

        def sample_rss() -> None:
            root = server.root_pid()
            while not stop.wait(0.5):
                samples.append(tree_rss_bytes(root))

        sampler = threading.Thread(target=sample_rss, daemon=True)
        sampler.start()
        try:
            log(f"{name}: POST {spec.predict_path} for {args.duration} s")
            result.predict = wrk(
                args, base + spec.predict_path, args.duration, ROW_BODY, f"{name}-predict"
            )
        finally:
            stop.set()
            sampler.join()
        result.rss_peak = max(samples, default=0)
        log(f"{name}: GET {spec.health_path} for {args.duration} s")
        result.health = wrk(args, base + spec.health_path, args.duration, None, f"{name}-health")
    except Exception as error:  # noqa: BLE001 -- reported in the table, the run goes on
        result.error = str(error).splitlines()[0][:200]
        log(f"{name}: FAILED: {error}")
    finally:
        if server is not None:
            server.stop()
        result.load = (load_before, os.getloadavg()[0])
    return result


# ---------------------------------------------------------------- report


def report(results: list[Result], args, info: dict) -> int:
    ok = {r.name: r for r in results if not r.error}
    anchors = [ok[n] for n in ("mlflow", "bentoml") if n in ok]
    best = max(anchors, key=lambda r: r.predict["rps"], default=None)

    def ms(us: float) -> str:
        return f"{us / 1000:.1f}"

    header = (
        "service|rps|p50 ms|p99 ms|non-2xx|sock err|ready s|RSS MiB|healthz rps|rps/anchor|"
        "p99/anchor"
    ).split("|")
    rows = []
    for r in results:
        if r.error:
            rows.append([r.name, "failed"] + [""] * (len(header) - 2))
            continue
        p, h = r.predict, r.health
        ratio = p99 = "-"
        if best is not None and r is not best:
            ratio = f"{p['rps'] / best.predict['rps']:.2f}x"
            p99 = f"{p['p99_us'] / best.predict['p99_us']:.2f}"
        elif r is best:
            ratio, p99 = "1.00x (anchor)", "1.00"
        rows.append([r.name, f"{p['rps']:.0f}", ms(p["p50_us"]), ms(p["p99_us"]),
                     str(p["non2xx"]), str(p["socket_errors"]), f"{r.ready_s:.2f}",
                     f"{r.rss_peak / 2**20:.0f}", f"{h['rps']:.0f}", ratio, p99])  # fmt: skip
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows, strict=True)]
    line = "  ".join

    print()
    print(
        f"wrk {args.connections} connections, {args.wrk_threads} threads, {args.duration} s, "
        f"1-row POST {ROW_BODY}; {args.workers} worker(s) each; loopback 127.0.0.1"
    )
    print(
        f"mlflow {info['mlflow']}, bentoml {info['bentoml']}, scikit-learn "
        f"{info['scikit-learn']}; {os.cpu_count()} CPUs; generated containers: "
        f"{' '.join(args.env) or 'default settings'}"
    )
    print()
    print(line(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print(line("-" * w for w in widths))
    for row in rows:
        print(line(str(x).ljust(w) for x, w in zip(row, widths, strict=True)))
    print()
    print(
        "rps, p50, p99, non-2xx, sock err: the predict run. ready s: start to first 200 from "
        "the readiness endpoint.\nRSS: peak over the run of the summed VmRSS of the server's "
        "process tree. healthz rps: the same wrk\nagainst the cheapest GET health endpoint. "
        "Ratios: to the better anchor (higher predict rps)."
    )
    loads = ", ".join(f"{r.name} {r.load[0]:.2f}->{r.load[1]:.2f}" for r in results if r.load)
    print(f"1-min load average before->after each server: {loads}")
    probes = ", ".join(f"{r.name} {r.probe_ms:.0f}" for r in results)
    print(f"CPU probe before each server (ms for a fixed Python loop; lower is faster): {probes}")
    for r in results:
        if r.error:
            print(f"failed: {r.name}: {r.error} (logs in bench/.work/)")
        if r.health and r.health["non2xx"] + r.health["socket_errors"]:
            print(
                f"note: {r.name} healthz run: {r.health['non2xx']} non-2xx, "
                f"{r.health['socket_errors']} socket errors"
            )
    print()

    verdicts = []

    def target(text: str, met: bool) -> None:
        verdicts.append(met)
        print(f"{'met    ' if met else 'NOT MET'}  {text}")

    if best is None:
        print("no anchor finished: no targets can be checked")
        return 2
    b = best.predict

    def rps_target(name: str, factor: float) -> None:
        f = ok[name].predict
        target(
            f"{name} rps >= {factor:g}x {best.name} ({b['rps']:.0f}): {f['rps']:.0f} rps = "
            f"{f['rps'] / b['rps']:.2f}x",
            f["rps"] >= factor * b["rps"],
        )

    if "fastapi" in ok:
        f = ok["fastapi"].predict
        rps_target("fastapi", 8)
        target(
            f"fastapi p99 <= 1/3 of {best.name} p99 ({ms(b['p99_us'])} ms): "
            f"{ms(f['p99_us'])} ms = {f['p99_us'] / b['p99_us']:.2f}",
            3 * f["p99_us"] <= b["p99_us"],
        )
    if "flask" in ok:
        f = ok["flask"].predict
        rps_target("flask", 2.5)
        both = ", ".join(f"{a.name} {ms(a.predict['p99_us'])} ms" for a in anchors)
        target(
            f"flask p99 below both anchors' p99 ({both}): {ms(f['p99_us'])} ms",
            all(f["p99_us"] < a.predict["p99_us"] for a in anchors) and len(anchors) == 2,
        )
    generated = [ok[n] for n in ("fastapi", "flask") if n in ok]
    if generated:
        counts = ", ".join(
            f"{r.name} {r.predict['non2xx']} non-2xx + {r.predict['socket_errors']} socket errors"
            for r in generated
        )
        target(
            f"zero non-2xx (generated services): {counts}",
            all(r.predict["non2xx"] + r.predict["socket_errors"] == 0 for r in generated),
        )
    if len(ok) < len(results):
        return 2
    return 0 if all(verdicts) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1, help="server workers, all servers")
    parser.add_argument("--duration", type=int, default=15, help="seconds per wrk run")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of unrecorded load first")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--port", type=int, default=18080, help="loopback port for each server")
    parser.add_argument("--servers", nargs="+", choices=ALL_SERVERS, default=ALL_SERVERS)
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra setting for the generated containers (e.g. LOG_LEVEL=warning)",
    )
    args = parser.parse_args()

    (WORK / "results").mkdir(parents=True, exist_ok=True)
    ensure_tools()
    ensure_venv()
    images, model = {}, None
    for framework in [s for s in ALL_SERVERS if s in GENERATED]:
        target, images[framework] = render_and_build(framework)
        model = model or target / "model" / "model.joblib"
        other = target / "model" / "model.joblib"
        if other.read_bytes() != model.read_bytes():
            raise SystemExit(f"{other} differs from {model}: the renders disagree")
    mlflow_dir = prepare_anchors(model)
    example = json.loads((model.parent / "example-request.json").read_text())["instances"]
    expected = reference_predictions(model, example)
    info = versions()

    results = [
        measure(name, args, images, model, mlflow_dir, example, expected) for name in args.servers
    ]
    return report(results, args, info)


if __name__ == "__main__":
    sys.exit(main())
