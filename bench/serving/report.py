"""The report: the throughput, sweep and overload tables, and py-spy's profile summary."""

import os
import re
from pathlib import Path

from .config import AS_SHIPPED, AT_BEST, GENERATED, OIP_PEERS
from .runs import Overload, Result, Turns
from .servers import CANDIDATES, SPECS, short


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
    groups = (("shipped", AS_SHIPPED, "the anchors as shipped"),
              ("best", AT_BEST, "the anchors at their best"),
              ("peers", OIP_PEERS, "the protocol's servers at their best"))  # fmt: skip
    fastest_of = {column: fastest(anchor_runs, names) for column, names, _ in groups}
    print(
        f"\nThroughput, the {args.ml} sample: wrk {args.connections} connections, "
        f"{args.wrk_threads} threads, {args.duration} s, 1-row POSTs "
        f"({SPECS['fastapi'].row_body} on /predict, {SPECS['mlserver'].row_body} on infer); "
        f"{args.workers} worker(s) each; loopback"
    )
    print(", ".join(f"{package} {version}" for package, version in info.items()) +
          f"; {os.cpu_count()} CPUs; generated containers: "
          f"{' '.join(args.env) or 'default settings'}\n")  # fmt: skip
    header = ["service", "rps", "p50 ms", "p99 ms", "non-2xx", "sock err", "ready s", "RSS MiB",
              "healthz rps"]  # fmt: skip
    header += [f"{measure}/{column}" for column, _, _ in groups for measure in ("rps", "p99")]
    rows = []
    for r in results:
        if r.error:
            rows.append([r.name, "failed"])
            continue
        p, ratios = r.predict, []
        for anchor in fastest_of.values():
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
        if r.name in CANDIDATES:
            print(f"{r.name}: {short(r.settings)} (the fastest of {len(CANDIDATES[r.name])})")
    for column, _, label in groups:
        if (anchor := fastest_of[column]) is not None:
            run = f" ({short(anchor.settings)})" if anchor.name in CANDIDATES else ""
            print(f"{column}: ratios to {anchor.name}{run} at {anchor.predict['rps']:.0f} rps, the "
                  f"fastest run of {label}")  # fmt: skip
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


def turns_table(turns: Turns, args) -> None:
    peers = ", ".join(f"{name} {short(turns.settings.get(name, {}))}" for name in turns.names
                      if name not in GENERATED)  # fmt: skip
    print(f"\nIn turns: every server up at once, {args.rounds} rounds of a {args.turn_duration} s "
          f"run each, same load; peers at their best ({peers or 'none'})\n")  # fmt: skip
    if turns.error:
        print(f"failed: {turns.error} (logs in bench/.work/)")
        return
    header = ["round", *(f"{name} rps" for name in turns.names),
              *(f"{name} p99 ms" for name in turns.names)]  # fmt: skip
    rows = [[str(i + 1), *(f"{run[name]['rps']:.0f}" for name in turns.names),
             *(ms(run[name]["p99_us"]) for name in turns.names)]
            for i, run in enumerate(turns.rounds)]  # fmt: skip
    table(header, rows)
    print()
    rows = []
    for name, over in turns.comparisons():
        cells = []
        for measure, unit in (("rps", "x"), ("p99_us", "")):
            ratios = turns.ratios(name, over, measure)
            cells.append(f"{turns.median(name, over, measure):.2f}{unit} "
                         f"({min(ratios):.2f}-{max(ratios):.2f})")  # fmt: skip
        rows.append([f"{name} / {over}", *cells])
    table(["ratio, round by round", "rps: median (range)", "p99: median (range)"], rows)
    print(f"Idle servers used at most {100 * turns.idle_cpu:.0f}% of a CPU during another's run.")


def sweep_table(sweeps: dict[str, list[Result]], args) -> None:
    print(f"\nServers at their best: each setting for {args.sweep_duration} s, same load\n")
    rows = []
    for name, tried in sweeps.items():
        for r in tried:
            if r.error:
                rows.append([name, short(r.settings), "failed"])
            else:
                rows.append([name, short(r.settings), f"{r.predict['rps']:.0f}",
                             ms(r.predict["p99_us"]), str(r.predict["non2xx"])])  # fmt: skip
    table(["server", "settings", "rps", "p99 ms", "non-2xx"], rows)


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


# Where a request's time goes: each sample by the package of its innermost frame, except
# that everything under the model's predict is the model call (its library, numpy and all).
# The service's own code is its package and what it calls directly for a request (numpy
# to parse the body, secrets for request ids).
SERVICE = "the service's own code"
CONCERNS = {
    "HTTP server, event loop": ("gunicorn", "uvicorn", "httptools", "h11", "asyncio",
                                "selectors", "socket", "email", "ssl", "ipaddress"),
    "web framework": ("flask", "werkzeug", "blinker", "starlette", "fastapi", "pydantic"),
    "thread hand-offs": ("threading", "concurrent", "queue"),
    SERVICE: ("numpy", "contextvars", "secrets", "random", "re"),
    "logging": ("logging",),
    "metrics": ("prometheus_client",),
    "JSON": ("json",),
}  # fmt: skip


def concern_of(stack: str, service: str | None) -> str:
    """A collapsed stack's concern (CONCERNS), or 'model call', 'no Python frame', 'other';
    `service` is the generated package."""
    frames = stack.split(";")
    if any(f.startswith(("predict (", "Model.predict (")) and "/model.py:" in f for f in frames):
        return "model call"
    if frames[-1].startswith("process "):
        return "no Python frame (native code, GIL held)"
    leaf = package_of(frames[-1])
    if leaf == service:
        return SERVICE
    return next((concern for concern, names in CONCERNS.items() if leaf in names), "other")


def profile_summary(name: str, path: Path) -> None:
    """Self time by package and the top functions, from py-spy's collapsed stacks."""
    if not path.exists():
        print(f"\nprofile {name}: py-spy wrote nothing ({path})")
        return
    by_package: dict[str, int] = {}
    by_function: dict[str, int] = {}
    by_concern: dict[str, int] = {}
    total = 0
    # The generated package: the one whose app.py has create_app (Flask has an app.py too).
    found = re.search(r"create_app\S* \((\w+)/app\.py:", path.read_text())
    service = found[1] if found else None
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit() or not stack:
            continue
        leaf = stack.rsplit(";", 1)[-1]
        n = int(count)
        total += n
        by_package[package_of(leaf)] = by_package.get(package_of(leaf), 0) + n
        by_function[leaf] = by_function.get(leaf, 0) + n
        concern = concern_of(stack, service)
        by_concern[concern] = by_concern.get(concern, 0) + n
    print(f"\nprofile {name}: {total} samples of the GIL holder (py-spy, 200/s)")
    print("  by concern:")
    for concern, n in sorted(by_concern.items(), key=lambda x: -x[1]):
        print(f"  {100 * n / total:5.1f}%  {concern}")
    print("  self time by package:")
    for package, n in sorted(by_package.items(), key=lambda x: -x[1])[:12]:
        print(f"  {100 * n / total:5.1f}%  {package}")
    print("  top functions by self time:")
    for function, n in sorted(by_function.items(), key=lambda x: -x[1])[:12]:
        print(f"  {100 * n / total:5.1f}%  {function[-110:]}")
