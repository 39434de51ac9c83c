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
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the kubelet's probe rules, shared with the serve stage
from kubelet import LIVENESS_PROBE, READINESS_PROBE, failed_in_a_row  # noqa: E402

BENCH = REPO / "bench"
WORK = BENCH / ".work"
VENV = BENCH / ".venv"
VPY = VENV / "bin" / "python"
ROW_BODY = '{"instances": [[5.1, 3.5, 1.4, 0.2]]}'
OVERLOAD_BODY = json.dumps({"instances": [
    [5.1, 3.5, 1.4, 0.2], [4.9, 3.0, 1.4, 0.2], [6.2, 3.4, 5.4, 2.3], [5.9, 3.0, 5.1, 1.8],
    [6.4, 3.2, 4.5, 1.5], [5.5, 2.3, 4.0, 1.3], [4.7, 3.2, 1.3, 0.2], [6.9, 3.1, 4.9, 1.5],
]})  # fmt: skip
ALL_SERVERS = ["fastapi", "flask", "mlflow", "bentoml", "bentoml-batched", "litserve-batched"]
GENERATED = ("fastapi", "flask")
AS_SHIPPED = ("mlflow", "bentoml")  # the anchors with their defaults
AT_BEST = ("bentoml-batched", "litserve-batched")  # the anchors batching, at their best settings
OVERLOAD_RSS_MIB = 64  # per worker: how far a generated service's RSS may grow under overload
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
        "['mlflow', 'bentoml', 'litserve', 'scikit-learn', 'uvicorn']}))"
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
    batched_answer: bool = False  # a bare JSON list of predictions, not {"predictions": [...]}


SPECS = {
    "fastapi": Spec("fastapi", "/predict", "/readyz", "/healthz"),
    "flask": Spec("flask", "/predict", "/readyz", "/healthz"),
    "mlflow": Spec("mlflow", "/invocations", "/ping", "/ping"),
    "bentoml": Spec("bentoml", "/predict", "/readyz", "/livez"),
    "bentoml-batched": Spec("bentoml-batched", "/predict", "/readyz", "/livez", True),
    "litserve-batched": Spec("litserve-batched", "/predict", "/health", "/health"),
}

# The settings each anchor "at its best" is tried with; a short run of each picks the one
# with the highest rps. The first of each list is the anchor's own default.
CANDIDATES: dict[str, list[dict[str, str]]] = {
    "bentoml-batched": [
        {"BENCH_MAX_BATCH_SIZE": "100", "BENCH_MAX_LATENCY_MS": "60000"},
        {"BENCH_MAX_BATCH_SIZE": "64", "BENCH_MAX_LATENCY_MS": "100"},
        {"BENCH_MAX_BATCH_SIZE": "32", "BENCH_MAX_LATENCY_MS": "20"},
    ],
    "litserve-batched": [
        {"BENCH_MAX_BATCH_SIZE": "64", "BENCH_BATCH_TIMEOUT_S": "0.005", "BENCH_FAST_QUEUE": "0"},
        {"BENCH_MAX_BATCH_SIZE": "64", "BENCH_BATCH_TIMEOUT_S": "0.005", "BENCH_FAST_QUEUE": "1"},
        {"BENCH_MAX_BATCH_SIZE": "16", "BENCH_BATCH_TIMEOUT_S": "0.001", "BENCH_FAST_QUEUE": "1"},
        {"BENCH_MAX_BATCH_SIZE": "128", "BENCH_BATCH_TIMEOUT_S": "0.01", "BENCH_FAST_QUEUE": "1"},
    ],
}


def short(settings: dict[str, str]) -> str:
    """BENCH_MAX_BATCH_SIZE=64 -> max_batch_size=64, for the tables."""
    return " ".join(f"{k.removeprefix('BENCH_').lower()}={v}" for k, v in settings.items())


@dataclass
class Bench:
    """What every server run needs: the options, the images, the model and its answers."""

    args: argparse.Namespace
    images: dict[str, str]
    model: Path
    mlflow_dir: Path
    check_rows: list
    expected: list


def start(bench: Bench, name: str, settings: dict[str, str]):
    args, port = bench.args, bench.args.port
    if name in GENERATED:
        return Container(name, bench.images[name], port, args.workers, args.env)
    path = f"{VENV / 'bin'}{os.pathsep}{os.environ['PATH']}"  # mlflow execs `uvicorn`
    if name == "mlflow":
        serve = "models serve --env-manager local --host 127.0.0.1".split()
        command = [VENV / "bin" / "mlflow", *serve, "-m", bench.mlflow_dir, "--port", str(port),
                   "--workers", str(args.workers)]  # fmt: skip
        return Process(name, command, {"PATH": path}, WORK)
    # The services read the model path, the worker count and their settings from the environment.
    env = {"PATH": path, "BENCH_MODEL": str(bench.model), "BENCH_WORKERS": str(args.workers),
           "BENTOML_DO_NOT_TRACK": "True", **settings}  # fmt: skip
    if name == "litserve-batched":
        return Process(name, [VPY, BENCH / "litserve_service.py", str(port)], env, BENCH)
    service = "IrisClassifierBatched" if name == "bentoml-batched" else "IrisClassifier"
    serve = f"serve bento_service:{service} --host 127.0.0.1".split()
    return Process(name, [VENV / "bin" / "bentoml", *serve, "--port", str(port)], env, BENCH)


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


@contextmanager
def serving(bench: Bench, name: str, settings: dict[str, str]):
    """Start one server, wait until it is ready and answers right; stop it afterwards.

    Yields the server and its seconds to ready.
    """
    spec, base = SPECS[name], f"http://127.0.0.1:{bench.args.port}"
    try:
        http(base + "/", timeout=1)
        raise RuntimeError(f"something already answers on 127.0.0.1:{bench.args.port}")
    except OSError:
        pass  # nothing listens: the port is free
    log(f"{name}: starting with {bench.args.workers} worker(s) {short(settings)}")
    started = time.monotonic()
    server = start(bench, name, settings)
    try:
        ready_s = wait_ready(server, base + spec.ready_path, started)
        body = json.dumps({"instances": bench.check_rows})
        status, answer = http(base + spec.predict_path, body)
        got = json.loads(answer) if status == 200 else None
        if got is not None and not spec.batched_answer:
            got = got.get("predictions")
        if got != bench.expected:
            raise RuntimeError(f"predicted {status} {answer[:200]!r}, expected {bench.expected}")
        log(f"{name}: ready after {ready_s:.2f} s, predictions match")
        yield server, ready_s
    finally:
        server.stop()


def wrk(args, url: str, seconds: int, body: str | None, label: str, **options) -> dict:
    """One closed-loop wrk run; the summary comes from wrk.lua's done().

    `connections` overrides the run's connection count; `count_status` has wrk.lua count
    the responses by status code (summary["statuses"]).
    """
    connections = options.get("connections", args.connections)
    command = ["wrk", "-t", str(args.wrk_threads), "-c", str(connections),
               "-d", f"{seconds}s", "--timeout", "10s", "--latency",
               "-s", str(BENCH / "wrk.lua"), url]  # fmt: skip
    env = {**os.environ, "BENCH_BODY": body or ""}
    if options.get("count_status"):
        env["BENCH_COUNT_STATUS"] = "1"
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=seconds + 60)
    (WORK / "results" / f"{label}.txt").write_text(done.stdout + done.stderr)
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH_SUMMARY ")), None)
    if done.returncode or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr[-500:]}")
    summary = json.loads(line.split(" ", 1)[1])
    # Answers that are errors are not throughput: rps counts the 2xx ones.
    summary["rps"] = (summary["requests"] - summary["non2xx"]) / (summary["duration_us"] / 1e6)
    summary["socket_errors"] = sum(summary[k] for k in ("connect", "read", "write", "timeout"))
    statuses: dict[int, int] = {}
    for counts in summary["statuses"]:
        for status, n in counts.items():
            statuses[int(status)] = statuses.get(int(status), 0) + n
    summary["statuses"] = statuses
    return summary


class RssSampler:
    """Peak summed RSS of a server's process tree, sampled every 0.5 s while in use."""

    def __init__(self, server) -> None:
        self.root, self.peak = server.root_pid(), 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            self.peak = max(self.peak, tree_rss_bytes(self.root))

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


class Prober(threading.Thread):
    """Kubelet-like probes during a run: one GET of each URL every 0.2 s, 10 s timeout.

    `seconds[url]` holds each probe's time in order, None for an answer other than 200.
    """

    def __init__(self, urls: list[str]) -> None:
        super().__init__(daemon=True)
        self.seconds: dict[str, list[float | None]] = {url: [] for url in urls}
        self._finished = threading.Event()

    def run(self) -> None:
        while not self._finished.wait(0.2):
            for url, seconds in self.seconds.items():
                started = time.monotonic()
                try:
                    ok = http(url, timeout=10)[0] == 200
                except OSError:
                    ok = False
                seconds.append(time.monotonic() - started if ok else None)

    def finish(self) -> None:
        self._finished.set()
        self.join()


class Profiler:
    """py-spy sampling a server's whole process tree during a run (--profile).

    --gil: only the thread holding the GIL is sampled, so waiting threads (gunicorn's
    arbiter, the supervisor, idle pool threads) do not count and the shares add up to where
    the interpreter's time goes. Native code that releases the GIL is not seen.
    """

    def __init__(self, server, name: str, seconds: int) -> None:
        self.output = WORK / f"profile-{name}.txt"
        command = [VENV / "bin" / "py-spy", "record", "--pid", str(server.root_pid()),
                   "--subprocesses", "--gil", "--rate", "200", "--format", "raw", "--nonblocking",
                   "--duration", str(seconds), "--output", self.output]  # fmt: skip
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def finish(self) -> None:
        self.proc.wait(60)


# ---------------------------------------------------------------- the runs


@dataclass
class Result:
    name: str
    settings: dict = field(default_factory=dict)
    error: str = ""
    ready_s: float = 0.0
    predict: dict = field(default_factory=dict)
    health: dict = field(default_factory=dict)
    rss_peak: int = 0
    load: tuple = ()
    probe_ms: float = 0.0


def measure(bench: Bench, name: str, settings: dict[str, str], sweep: bool = False) -> Result:
    """Throughput: 1-row POSTs on `connections` connections, then GETs of the health path.

    A sweep run (choosing an anchor's best settings) is shorter and skips the health run.
    """
    args, spec = bench.args, SPECS[name]
    base = f"http://127.0.0.1:{args.port}"
    result = Result(name, settings, probe_ms=cpu_probe_ms())
    load_before = os.getloadavg()[0]
    label = f"{name}-{args.workers}w" + (f"-{short(settings)}".replace(" ", "_") if sweep else "")
    try:
        with serving(bench, name, settings) as (server, result.ready_s):
            wrk(args, base + spec.predict_path, args.warmup, ROW_BODY, f"{label}-warmup")
            seconds = args.sweep_duration if sweep else args.duration
            profiler = None
            if args.profile and name in GENERATED and not sweep:
                profiler = Profiler(server, f"{name}-{args.workers}w", seconds - 1)
            log(f"{name}: POST {spec.predict_path} for {seconds} s")
            with RssSampler(server) as rss:
                result.predict = wrk(args, base + spec.predict_path, seconds, ROW_BODY, label)
            result.rss_peak = rss.peak
            if profiler:
                profiler.finish()
            if not sweep:
                log(f"{name}: GET {spec.health_path} for {seconds} s")
                url = base + spec.health_path
                result.health = wrk(args, url, seconds, None, f"{label}-health")
    except Exception as error:  # noqa: BLE001 -- reported in the table, the run goes on
        result.error = str(error).splitlines()[0][:200]
        log(f"{name}: FAILED: {error}")
    finally:
        result.load = (load_before, os.getloadavg()[0])
    return result


def best_settings(bench: Bench, name: str) -> tuple[dict[str, str], list[Result]]:
    """Each candidate setting for a short run; the one with the highest rps wins."""
    tried = [measure(bench, name, settings, sweep=True) for settings in CANDIDATES[name]]
    finished = [r for r in tried if not r.error]
    if not finished:
        return CANDIDATES[name][0], tried
    return max(finished, key=lambda r: r.predict["rps"]).settings, tried


@dataclass
class Overload:
    name: str
    error: str = ""
    run: dict = field(default_factory=dict)
    rss_idle: int = 0
    rss_peak: int = 0
    readiness: list = field(default_factory=list)  # seconds of each probe, None: not 200
    liveness: list = field(default_factory=list)


def overload(bench: Bench, name: str, settings: dict[str, str]) -> Overload:
    """Ten times the load: 8-row POSTs on many connections, with probes and RSS watched."""
    args, spec = bench.args, SPECS[name]
    base = f"http://127.0.0.1:{args.port}"
    result = Overload(name)
    try:
        with serving(bench, name, settings) as (server, _):
            result.rss_idle = tree_rss_bytes(server.root_pid())
            ready_url, health_url = base + spec.ready_path, base + spec.health_path
            prober = Prober(sorted({ready_url, health_url}))
            prober.start()
            log(f"{name}: overload, {args.overload_connections} connections, 8-row POSTs")
            try:
                with RssSampler(server) as rss:
                    result.run = wrk(
                        args, base + spec.predict_path, args.overload_duration, OVERLOAD_BODY,
                        f"{name}-{args.workers}w-overload",
                        connections=args.overload_connections, count_status=True,
                    )  # fmt: skip
            finally:
                prober.finish()
            result.rss_peak = rss.peak
            result.readiness = prober.seconds[ready_url]
            result.liveness = prober.seconds[health_url]
    except Exception as error:  # noqa: BLE001 -- reported in the table, the run goes on
        result.error = str(error).splitlines()[0][:200]
        log(f"{name}: overload FAILED: {error}")
    return result


# ---------------------------------------------------------------- report


def ms(us: float) -> str:
    return f"{us / 1000:.1f}"


def table(header: list[str], rows: list[list[str]]) -> None:
    """Columns padded to their widest cell; a short row (a failed server's) is padded too."""
    rows = [row + [""] * (len(header) - len(row)) for row in rows]
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows, strict=True)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)))


def fastest(results: list[Result], names: tuple[str, ...]) -> Result | None:
    finished = [r for r in results if r.name in names and not r.error]
    return max(finished, key=lambda r: r.predict["rps"], default=None)


def throughput_table(results: list[Result], anchor_runs: list[Result], args, info: dict) -> None:
    shipped, best = fastest(anchor_runs, AS_SHIPPED), fastest(anchor_runs, AT_BEST)
    print(
        f"\nThroughput: wrk {args.connections} connections, {args.wrk_threads} threads, "
        f"{args.duration} s, 1-row POST {ROW_BODY}; {args.workers} worker(s) each; loopback"
    )
    print(
        f"mlflow {info['mlflow']}, bentoml {info['bentoml']}, litserve {info['litserve']}, "
        f"scikit-learn {info['scikit-learn']}; {os.cpu_count()} CPUs; generated containers: "
        f"{' '.join(args.env) or 'default settings'}\n"
    )
    header = ("service|rps|p50 ms|p99 ms|non-2xx|sock err|ready s|RSS MiB|healthz rps|"
              "rps/shipped|p99/shipped|rps/best|p99/best").split("|")  # fmt: skip
    rows = []
    for r in results:
        if r.error:
            rows.append([r.name, "failed"])
            continue
        p, ratios = r.predict, []
        for anchor in (shipped, best):
            if r.name in GENERATED and anchor is not None:
                a = anchor.predict
                ratios += [f"{p['rps'] / a['rps']:.2f}x", f"{p['p99_us'] / a['p99_us']:.2f}"]
            else:
                ratios += ["-", "-"]
        rows.append([r.name, f"{p['rps']:.0f}", ms(p["p50_us"]), ms(p["p99_us"]),
                     str(p["non2xx"]), str(p["socket_errors"]), f"{r.ready_s:.2f}",
                     f"{r.rss_peak / 2**20:.0f}", f"{r.health['rps']:.0f}", *ratios])  # fmt: skip
    table(header, rows)
    print()
    for r in results:
        if r.settings:
            print(f"{r.name}: {short(r.settings)} (the fastest of {len(CANDIDATES[r.name])})")
    columns = (("shipped", "as shipped", shipped), ("best", "at their best", best))
    for column, label, anchor in columns:
        if anchor is not None:
            run = f" ({short(anchor.settings)})" if anchor.settings else ""
            print(f"{column}: ratios to {anchor.name}{run} at {anchor.predict['rps']:.0f} rps, the "
                  f"fastest run of the anchors {label}")  # fmt: skip
    loads = ", ".join(f"{r.name} {r.load[0]:.2f}->{r.load[1]:.2f}" for r in results if r.load)
    print(f"1-min load average before->after each server: {loads}")
    probes = ", ".join(f"{r.name} {r.probe_ms:.0f}" for r in results)
    print(f"CPU probe before each server (ms for a fixed Python loop; lower is faster): {probes}")
    say_why_failed(results)
    for r in results:
        if r.health and r.health["non2xx"] + r.health["socket_errors"]:
            print(
                f"note: {r.name} healthz run: {r.health['non2xx']} non-2xx, "
                f"{r.health['socket_errors']} socket errors"
            )


def sweep_table(sweeps: dict[str, list[Result]], args) -> None:
    print(f"\nAnchors at their best: each setting for {args.sweep_duration} s, same load\n")
    rows = []
    for name, tried in sweeps.items():
        for r in tried:
            if r.error:
                rows.append([name, short(r.settings), "failed"])
            else:
                rows.append([name, short(r.settings), f"{r.predict['rps']:.0f}",
                             ms(r.predict["p99_us"]), str(r.predict["non2xx"])])  # fmt: skip
    table(["anchor", "settings", "rps", "p99 ms", "non-2xx"], rows)


def shares(run: dict) -> tuple[int, int, int, int]:
    """Answered responses: total, 503s, other 5xx, 4xx."""
    statuses = run["statuses"]
    answered = sum(statuses.values())
    other_5xx = sum(n for s, n in statuses.items() if s >= 500 and s != 503)
    client = sum(n for s, n in statuses.items() if 400 <= s < 500)
    return answered, statuses.get(503, 0), other_5xx, client


def overload_table(results: list[Overload], args) -> None:
    print(
        f"\nOverload: wrk {args.overload_connections} connections, {args.overload_duration} s, "
        f"8-row POSTs; probes GET the health and readiness paths every 0.2 s\n"
    )
    header = ("service|answered/s|200/s|p99 ms|503 %|other 5xx %|4xx|sock err|RSS idle->peak MiB|"
              "probe p50 ms|probe max ms|not 200").split("|")  # fmt: skip
    rows = []
    for r in results:
        if r.error:
            rows.append([r.name, "failed"])
            continue
        run, seconds = r.run, r.run["duration_us"] / 1e6
        answered, shed, other, client = shares(run)
        every = probes_of(r)
        probes = sorted(s for s in every if s is not None) or [0.0]
        answered_200 = run["statuses"].get(200, 0)
        rows.append([r.name, f"{answered / seconds:.0f}", f"{answered_200 / seconds:.0f}",
                     ms(run["p99_us"]), f"{100 * shed / max(answered, 1):.1f}",
                     f"{100 * other / max(answered, 1):.2f}", str(client),
                     str(run["socket_errors"]),
                     f"{r.rss_idle / 2**20:.0f}->{r.rss_peak / 2**20:.0f}",
                     f"{1000 * probes[len(probes) // 2]:.0f}", f"{1000 * probes[-1]:.0f}",
                     str(every.count(None))])  # fmt: skip
    table(header, rows)
    print(
        "p99: of every answered request, 503s included. sock err: connect/read/write errors and "
        "10 s timeouts.\nnot 200: probes that got no 200 within 10 s."
    )
    say_why_failed(results)


def say_why_failed(results: list[Result] | list[Overload]) -> None:
    for r in results:
        if r.error:
            print(f"failed: {r.name}: {r.error} (logs in bench/.work/)")


def probes_of(r: Overload) -> list[float | None]:
    """Every probe of a run, once (an anchor may have one path for both)."""
    return r.readiness + (r.liveness if r.liveness is not r.readiness else [])


def package_of(frame: str) -> str:
    """'predict (sklearn/tree/_classes.py:1049)' -> 'sklearn'; 'uuid4 (uuid.py:712)' -> 'uuid'.

    py-spy names files relative to their sys.path entry, so the first part is the package.
    """
    path = frame.rsplit(" (", 1)[-1].rsplit(":", 1)[0]
    return path.split("/", 1)[0].removesuffix(".py")


def profile_summary(name: str, path: Path) -> None:
    """Self time by package and the top functions, from py-spy's collapsed stacks."""
    if not path.exists():
        print(f"\nprofile {name}: py-spy wrote nothing ({path})")
        return
    by_package: dict[str, int] = {}
    by_function: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit() or not stack:
            continue
        leaf = stack.rsplit(";", 1)[-1]
        n = int(count)
        total += n
        by_package[package_of(leaf)] = by_package.get(package_of(leaf), 0) + n
        by_function[leaf] = by_function.get(leaf, 0) + n
    print(f"\nprofile {name}: {total} samples of the GIL holder (py-spy, 200/s)")
    print("  self time by package:")
    for package, n in sorted(by_package.items(), key=lambda x: -x[1])[:12]:
        print(f"  {100 * n / total:5.1f}%  {package}")
    print("  top functions by self time:")
    for function, n in sorted(by_function.items(), key=lambda x: -x[1])[:12]:
        print(f"  {100 * n / total:5.1f}%  {function[-110:]}")


def targets(results: list[Result], anchor_runs: list[Result], loads: list[Overload], args) -> int:
    ok = {r.name: r for r in results if not r.error}
    verdicts = []

    def target(text: str, met: bool) -> None:
        verdicts.append(met)
        print(f"{'met    ' if met else 'NOT MET'}  {text}")

    print()
    for label, names, factor, p99_factor in (("as shipped", AS_SHIPPED, 8, 1 / 3),
                                             ("at their best", AT_BEST, 2, 1)):  # fmt: skip
        best = fastest(anchor_runs, names)
        if best is None:
            continue
        b = best.predict
        if "fastapi" in ok:
            f = ok["fastapi"].predict
            target(
                f"fastapi rps >= {factor}x the anchors {label} ({best.name} {b['rps']:.0f}): "
                f"{f['rps']:.0f} = {f['rps'] / b['rps']:.2f}x",
                f["rps"] >= factor * b["rps"],
            )
            target(
                f"fastapi p99 <= {p99_factor:.2g}x {best.name}'s ({ms(b['p99_us'])} ms): "
                f"{ms(f['p99_us'])} ms = {f['p99_us'] / b['p99_us']:.2f}x",
                f["p99_us"] <= p99_factor * b["p99_us"],
            )
        if "flask" in ok and names == AS_SHIPPED:
            f, anchors = ok["flask"].predict, [ok[n] for n in names if n in ok]
            target(
                f"flask rps >= 2.5x {best.name} ({b['rps']:.0f}): {f['rps']:.0f} = "
                f"{f['rps'] / b['rps']:.2f}x",
                f["rps"] >= 2.5 * b["rps"],
            )
            both = ", ".join(f"{a.name} {ms(a.predict['p99_us'])} ms" for a in anchors)
            target(
                f"flask p99 below the shipped anchors' ({both}): {ms(f['p99_us'])} ms",
                all(f["p99_us"] < a.predict["p99_us"] for a in anchors),
            )
        if "flask" in ok and names == AT_BEST and args.workers == 1:
            f = ok["flask"].predict
            target(
                f"flask rps above every anchor at its best ({best.name} {b['rps']:.0f}): "
                f"{f['rps']:.0f} = {f['rps'] / b['rps']:.2f}x",
                f["rps"] > b["rps"],
            )
    generated = [ok[n] for n in GENERATED if n in ok]
    if generated:
        counts = ", ".join(
            f"{r.name} {r.predict['non2xx']} non-2xx + {r.predict['socket_errors']} socket errors"
            for r in generated
        )
        target(
            f"zero non-2xx (generated services): {counts}",
            all(r.predict["non2xx"] + r.predict["socket_errors"] == 0 for r in generated),
        )
    for r in loads:
        if r.name not in GENERATED or r.error:
            continue
        answered, _, other, _ = shares(r.run)
        target(
            f"{r.name} overload: no 5xx but deliberate 503s, no socket errors: {other} other "
            f"5xx, {r.run['socket_errors']} socket errors",
            other == 0 and r.run["socket_errors"] == 0,
        )
        growth, bound = (r.rss_peak - r.rss_idle) / 2**20, OVERLOAD_RSS_MIB * args.workers
        target(f"{r.name} overload: RSS grows <= {bound} MiB: {growth:.0f} MiB", growth <= bound)
        worst = max((s for s in probes_of(r) if s is not None), default=0.0)
        runs = {probe: (failed_in_a_row(seconds, timeout), threshold)
                for probe, seconds, (timeout, threshold) in (
                    ("readiness", r.readiness, READINESS_PROBE),
                    ("liveness", r.liveness, LIVENESS_PROBE))}  # fmt: skip
        seen = "; ".join(f"{probe}: at most {run} failed in a row, {threshold} would act"
                         for probe, (run, threshold) in runs.items())  # fmt: skip
        target(
            f"{r.name} overload: the kubelet keeps the pod ready and alive ({seen}; "
            f"slowest probe {worst:.2f} s)",
            all(run < threshold for run, threshold in runs.values()),
        )
    if len(ok) < len(results) or any(r.error for r in loads):
        return 2
    return 0 if all(verdicts) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1, help="server workers, all servers")
    parser.add_argument("--duration", type=int, default=15, help="seconds per wrk run")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of unrecorded load first")
    parser.add_argument("--sweep-duration", type=int, default=6,
                        help="seconds per setting tried for an anchor at its best")  # fmt: skip
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--overload-connections", type=int, default=256)
    parser.add_argument("--overload-duration", type=int, default=10)
    parser.add_argument("--no-overload", action="store_true", help="skip the overload runs")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy the generated services during their predict runs")  # fmt: skip
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
    for framework in [s for s in args.servers if s in GENERATED] or ["fastapi"]:
        target, image = render_and_build(framework)
        if framework in args.servers:
            images[framework] = image
        model = model or target / "model" / "model.joblib"
        other = target / "model" / "model.joblib"
        if other.read_bytes() != model.read_bytes():
            raise SystemExit(f"{other} differs from {model}: the renders disagree")
    mlflow_dir = prepare_anchors(model)
    example = json.loads((model.parent / "example-request.json").read_text())["instances"]
    bench = Bench(args, images, model, mlflow_dir, example, reference_predictions(model, example))
    info = versions()

    sweeps = {name: best_settings(bench, name) for name in args.servers if name in CANDIDATES}
    results = [measure(bench, name, sweeps[name][0] if name in sweeps else {})
               for name in args.servers]  # fmt: skip
    loads = []
    if not args.no_overload:
        loads = [overload(bench, r.name, r.settings) for r in results]

    # The anchors at their best are compared at their fastest run, the settings sweep's short
    # runs included: on a noisy machine that is the anchor's best showing, not its average.
    anchor_runs = results + [r for _, tried in sweeps.values() for r in tried if not r.error]
    throughput_table(results, anchor_runs, args, info)
    if sweeps:
        sweep_table({name: tried for name, (_, tried) in sweeps.items()}, args)
    if loads:
        overload_table(loads, args)
    if args.profile:
        for name in GENERATED:
            if name in args.servers:
                profile_summary(name, WORK / f"profile-{name}-{args.workers}w.txt")
    return targets(results, anchor_runs, loads, args)


if __name__ == "__main__":
    sys.exit(main())
