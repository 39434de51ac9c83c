"""The runs: wrk's closed loop on one server, its settings swept, servers in turns, and the
overload run with kubelet-like probes; py-spy where asked."""

import contextlib
import json
import os
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass, field

from .config import BENCH, GENERATED, VENVS, WORK, log, server_of
from .processes import RssSampler, cpu_probe_ms, tree_cpu_seconds, tree_rss_bytes
from .servers import CANDIDATES, Bench, http, serving, short


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
        command = [VENVS["anchors"] / "bin" / "py-spy", "record", "--pid", str(server.root_pid()),
                   "--subprocesses", "--gil", "--rate", "200", "--format", "raw", "--nonblocking",
                   "--duration", str(seconds), "--output", self.output]  # fmt: skip
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def finish(self) -> None:
        self.proc.wait(60)


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
    args, spec = bench.args, bench.spec(name)
    base = f"http://127.0.0.1:{args.port}"
    result = Result(name, settings, probe_ms=cpu_probe_ms())
    load_before = os.getloadavg()[0]
    label = f"{name}-{args.workers}w" + (f"-{short(settings)}".replace(" ", "_") if sweep else "")
    try:
        with serving(bench, name, settings) as (server, result.ready_s):
            wrk(args, base + spec.predict_path, args.warmup, spec.row_body, f"{label}-warmup")
            seconds = args.sweep_duration if sweep else args.duration
            profiler = None
            if args.profile and name in GENERATED and not sweep:
                profiler = Profiler(server, f"{name}-{args.workers}w", seconds - 1)
            log(f"{name}: POST {spec.predict_path} for {seconds} s")
            with RssSampler(server) as rss:
                result.predict = wrk(args, base + spec.predict_path, seconds, spec.row_body, label)
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


@dataclass
class Turns:
    """Servers loaded in turns, one short run each per round, all of them up throughout.

    This VM's speed drifts by 30% from minute to minute, so runs minutes apart compare the
    minutes as much as the servers; a round's runs are seconds apart and see one machine.
    A ratio is the median over rounds of one server's measure over another's.
    """

    names: list[str]  # a round's runs, in order ("fastapi" /predict, "fastapi-oip" infer, ...)
    settings: dict[str, dict]  # each peer's, its best by the sweep
    error: str = ""
    rounds: list[dict[str, dict]] = field(default_factory=list)  # name -> wrk summary
    idle_cpu: float = 0.0  # the largest share of a CPU a server used during another's run

    def ratios(self, name: str, over: str, measure: str) -> list[float]:
        return [run[name][measure] / run[over][measure] for run in self.rounds]

    def median(self, name: str, over: str, measure: str) -> float:
        return statistics.median(self.ratios(name, over, measure))

    def has(self, *names: str) -> bool:
        return not self.error and all(name in self.names for name in names)

    def comparisons(self) -> list[tuple[str, str]]:
        """(name, over): each framework's infer over its /predict, each generated run over
        each peer."""
        ours = [name for name in self.names if name in GENERATED]
        peers = [name for name in self.names if name not in GENERATED]
        endpoints = [(name, server_of(name)) for name in ours
                     if name != server_of(name) and server_of(name) in ours]  # fmt: skip
        return endpoints + [(name, peer) for name in ours for peer in peers]


def in_turns(bench: Bench, names: list[str], settings: dict[str, dict]) -> Turns:
    """Every server in `names` up at once, each on its own ports (a generated image serves
    both its endpoints from one container), then `rounds` rounds of a run each."""
    args = bench.args
    result = Turns(names, settings)
    servers = list(dict.fromkeys(server_of(name) for name in names))
    ports = {server: args.port + 10 * i for i, server in enumerate(servers)}
    try:
        with contextlib.ExitStack() as stack:
            roots = {}  # each server's root process, whose tree's CPU time is read
            for server in servers:
                serve = serving(bench, server, settings.get(server, {}), ports[server])
                roots[server] = stack.enter_context(serve)[0].root_pid()
            log(f"in turns: {', '.join(names)}; {args.rounds} x {args.turn_duration} s")
            for i in range(args.rounds):
                result.rounds.append({})
                for name in names:
                    server, spec = server_of(name), bench.spec(name)
                    url = f"http://127.0.0.1:{ports[server]}{spec.predict_path}"
                    label = f"{name}-{args.workers}w-turn{i}"
                    wrk(args, url, 1, spec.row_body, f"{label}-warmup")
                    idle = {other: tree_cpu_seconds(root)
                            for other, root in roots.items() if other != server}  # fmt: skip
                    run = wrk(args, url, args.turn_duration, spec.row_body, label)
                    seconds = run["duration_us"] / 1e6
                    for other, before in idle.items():
                        used = tree_cpu_seconds(roots[other]) - before
                        result.idle_cpu = max(result.idle_cpu, used / seconds)
                    result.rounds[-1][name] = run
    except Exception as error:  # noqa: BLE001 -- reported under the tables, the run goes on
        result.error = str(error).splitlines()[0][:200]
        log(f"in turns FAILED: {error}")
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
    args, spec = bench.args, bench.spec(name)
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
                        args, base + spec.predict_path, args.overload_duration, spec.overload_body,
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
