"""The targets of the issues that asked for this benchmark, each a line: met or NOT MET."""

import sys

from .config import AS_SHIPPED, AT_BEST, GENERATED, OIP_PEERS, OVERLOAD_RSS_MIB, REPO
from .report import fastest, ms, probes_of, shares
from .runs import Overload, Result, Turns

sys.path.insert(0, str(REPO / "tests"))  # the kubelet's probe rules, shared with the serve stage
from kubelet import LIVENESS_PROBE, READINESS_PROBE, failed_in_a_row  # noqa: E402


def targets(
    results: list[Result],
    anchor_runs: list[Result],
    turns: Turns | None,
    loads: list[Overload],
    args,
) -> int:
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
    # The protocol's infer endpoint: as fast as /predict, and above every peer at its best;
    # compared in turns (see in_turns), where the ratios of the same minutes are medianed.
    for framework in ("fastapi", "flask"):
        infer = f"{framework}-oip"
        if turns and turns.has(framework, infer):
            rps = turns.median(infer, framework, "rps")
            p99 = turns.median(infer, framework, "p99_us")
            within = f"{framework} infer {{}} within 10% of /predict's, in turns (median)"
            target(f"{within.format('rps')}: {rps:.2f}x", rps >= 0.9)
            target(f"{within.format('p99')}: {p99:.2f}x", p99 <= 1.1)
        for peer in OIP_PEERS:
            if turns and turns.has(infer, peer):
                rps, p99 = turns.median(infer, peer, "rps"), turns.median(infer, peer, "p99_us")
                target(f"{framework} infer rps above {peer}'s at its best, in turns (median): "
                       f"{rps:.2f}x", rps > 1)  # fmt: skip
                target(f"{framework} infer p99 at or below {peer}'s, in turns (median): "
                       f"{p99:.2f}x", p99 <= 1)  # fmt: skip
    peer = fastest(anchor_runs, OIP_PEERS)
    for framework in ("fastapi", "flask"):
        if (infer := ok.get(f"{framework}-oip")) is None or peer is None or turns:
            continue  # without turns: the single runs
        o, b = infer.predict, peer.predict
        target(
            f"{framework} infer rps above every protocol server at its best ({peer.name} "
            f"{b['rps']:.0f}): {o['rps']:.0f} = {o['rps'] / b['rps']:.2f}x",
            o["rps"] > b["rps"],
        )
        target(
            f"{framework} infer p99 at or below {peer.name}'s ({ms(b['p99_us'])} ms): "
            f"{ms(o['p99_us'])} ms = {o['p99_us'] / b['p99_us']:.2f}x",
            o["p99_us"] <= b["p99_us"],
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
    if len(ok) < len(results) or any(r.error for r in loads) or (turns and turns.error):
        return 2
    return 0 if all(verdicts) else 1
