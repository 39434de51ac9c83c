"""The tables, in Markdown, and a line per target."""

from .config import READY_SLOWER_BY_AT_MOST, SIZE_TARGET, SOURCE_REBUILD_TARGET_S
from .images import Project
from .measures import Row


def mb(n: int) -> str:
    return f"{n / 1e6:.1f}"


def table(header: list[str], rows: list[list[str]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()


def report(default: Project, base: str, rows: list[Row], sizes: list[tuple], runs: int) -> None:
    if rows:
        print(f"\nDefault render ({default.package}, Python {default.python}, base {base}):\n")
        table(
            ["Dockerfile", "cold build s", "source-only rebuild s", "installs re-run",
             "serving change rebuild s", "ML layer reused", "MB over base",
             "gzip MB over base", f"ready s (median of {runs})"],
            [[r.dockerfile, f"{r.cold_s:.1f}", f"{r.source_s:.2f}", str(len(r.source_reran)),
              f"{r.serving_s:.1f}", "yes" if r.ml_reused else "no", mb(r.over_base),
              mb(r.gzip_over_base), f"{r.ready_s:.2f}"] for r in rows],
        )  # fmt: skip
    print("Each ML framework's render, the generated image against docker init's:\n")
    table(
        ["ML framework", "Python", "generated MB over base", "docker-init MB over base",
         "ratio", "generated gzip MB", "docker-init gzip MB", "gzip ratio"],
        [[f, p, mb(m["generated"][0]), mb(m["docker-init"][0]),
          f"{m['generated'][0] / m['docker-init'][0]:.2f}", mb(m["generated"][1]),
          mb(m["docker-init"][1]), f"{m['generated'][1] / m['docker-init'][1]:.2f}"]
         for f, p, m in sizes],
    )  # fmt: skip


def targets(rows: list[Row]) -> int:
    generated, init = rows[0], rows[1]
    ratio = generated.over_base / init.over_base
    checks = [
        (f"source-only rebuild {generated.source_s:.2f} s <= {SOURCE_REBUILD_TARGET_S} s, "
         f"no install re-run ({len(generated.source_reran)} re-ran)",
         generated.source_s <= SOURCE_REBUILD_TARGET_S and not generated.source_reran),
        ("ML layer reused on a serving-dependency change", generated.ml_reused),
        (f"bytes over base {ratio:.2f} of docker init's image, target <= {SIZE_TARGET}",
         ratio <= SIZE_TARGET),
        (f"ready {generated.ready_s:.2f} s, docker init's image {init.ready_s:.2f} s "
         f"(target: at most {READY_SLOWER_BY_AT_MOST}x)",
         generated.ready_s <= init.ready_s * READY_SLOWER_BY_AT_MOST),
    ]  # fmt: skip
    for text, met in checks:
        print(f"- {'met' if met else 'NOT met'}: {text}")
    return 0 if all(met for _, met in checks) else 1
