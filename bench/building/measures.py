"""The measurements: each Dockerfile's builds on the default render, the images' times
to ready in turns, and each ML framework's image sizes."""

import statistics
import time
from dataclasses import dataclass, field

from .config import NEW_SERVING_DEPENDENCY, REPO, log, sh
from .images import (
    Project,
    build,
    gzip_bytes_over,
    image_bytes,
    relock,
    render,
    seconds_to_ready,
    torch_cpu_index,
    variant,
)


@dataclass
class Row:
    image: str
    dockerfile: str
    cold_s: float
    source_s: float
    source_reran: list[str]
    serving_s: float
    ml_reused: bool
    over_base: int
    gzip_over_base: int
    ready: list[float] = field(default_factory=list)
    ready_s: float = 0.0


def measure(project: Project, dockerfile: str, base: str) -> Row:
    context = variant(project, dockerfile)
    tag = f"ml-docker-template-build-bench:{project.name}-{dockerfile}"
    log(f"{dockerfile}: cold build (no layer cache, no pip cache)")
    sh("docker", "builder", "prune", "--force", "--filter", "type=exec.cachemount")
    started = time.monotonic()
    cold = build(context, tag, project, f"{dockerfile}-cold", "--no-cache")
    log(f"{dockerfile}: rebuild after a source-only change")
    app = context / "src" / project.package / "app.py"
    app.write_text(app.read_text() + "\n# a source-only change\n")
    source = build(context, tag, project, f"{dockerfile}-source")
    log(f"{dockerfile}: rebuild after a serving-dependency change ({NEW_SERVING_DEPENDENCY})")
    serving, lock = (context / "requirements" / f"serving.{kind}" for kind in ("txt", "lock"))
    before = serving.read_text(), lock.read_text()
    serving.write_text(before[0] + NEW_SERVING_DEPENDENCY + "\n")
    relock(context, "serving")  # as a team does: edit the .txt, lock it again
    # A layer an earlier run built for the same change would come from the cache: forget
    # what this run has not used (the generated Dockerfile installs the web stack from
    # its lock's entries, not its bytes, so a comment in the lock would not tell them apart).
    since = f"until={int(time.monotonic() - started) + 1}s"
    sh("docker", "builder", "prune", "--force", "--filter", since)
    changed = build(context, tag, project, f"{dockerfile}-serving")
    serving.write_text(before[0])
    lock.write_text(before[1])
    final = build(context, tag, project, f"{dockerfile}-final")  # the image measured below
    log(f"{dockerfile}: {final.seconds:.1f} s back to the measured image, and its size")
    return Row(
        tag,
        dockerfile,
        cold.seconds,
        source.seconds,
        [s for s in source.steps_run() if "install" in s],
        changed.seconds,
        not changed.ran_install("ml.lock"),
        image_bytes(tag) - image_bytes(base),
        gzip_bytes_over(tag, base),
    )


def time_to_ready(rows: list["Row"], runs: int) -> None:
    """Each image's median time to ready, the images taking turns run after run: a start
    right after a build, or in a quieter minute, favours no Dockerfile."""
    for n in range(runs):
        log(f"time to ready, round {n + 1} of {runs}")
        for row in rows:
            row.ready.append(seconds_to_ready(row.image))
    for row in rows:
        row.ready_s = statistics.median(row.ready)


def framework_sizes(frameworks: list[str], default: Project) -> list[tuple]:
    """Each ML framework's render built with the generated and docker init's Dockerfile."""
    sizes, server = [], None
    for framework in frameworks:
        data = {"ml_framework": framework}
        index = None
        if framework == "pytorch":
            index, server = torch_cpu_index()
            if index:  # the local wheel folder has a CPU wheel for Python 3.11 only
                data["python_version"] = "3.11"
        project = default if framework == "sklearn" else render(framework, data)
        if index:
            project.build_args["TORCH_INDEX_URL"] = index
        base = f"python:{project.python}-slim"
        sh("bash", REPO / "tests/infra/base-images.sh", project.python)
        measured = {}
        for name in ("generated", "docker-init"):
            tag = f"ml-docker-template-build-bench:{framework}-{name}"
            log(f"{framework}: {name} image, for its size")
            build(variant(project, name), tag, project, f"{framework}-{name}")
            measured[name] = (image_bytes(tag) - image_bytes(base), gzip_bytes_over(tag, base))
        sizes.append((framework, project.python, measured))
        if server:
            server.terminate()
            server.wait(timeout=10)
    return sizes
