"""Shared stages: render a combination once, then every stage reuses it."""

import contextlib
import json
import shutil
import time
from pathlib import Path

import pytest

import plan
from combinations import ALL, TEMPLATE_ROOT, Combination
from disk import DiskWatch
from renders import Renders

# Real registry servers (S3, GCS, MLflow, HTTPS), and the sample model each holds, as
# session fixtures.
pytest_plugins = ["servers.fixtures", "published", "updates"]

SELECTED = pytest.StashKey[list]()
# Stages run in this order whatever the file names: render before build before run.
STAGES = [
    "test_tooling", "test_plan", "test_questionnaire", "test_render", "test_update",
    "test_update_flow", "test_dependency_updates", "test_build", "test_serve",
    "test_serve_faults", "test_serve_load", "test_oip", "test_push", "test_registry",
    "test_registry_faults",
]  # fmt: skip
# Wall seconds per stage, and of the session fixtures' set-ups inside them, for the summary.
STAGE_SECONDS = pytest.StashKey[dict[str, float]]()
SETUP_SECONDS = pytest.StashKey[dict[str, float]]()
DISK = pytest.StashKey[DiskWatch]()


def stage_of(item) -> str:
    return item.module.__name__.rpartition(".")[2]


def pytest_addoption(parser):
    parser.addoption(
        "--shard",
        metavar="K/N",
        help="run the K-th of N shards: each Python and ML build's tests and images in one "
        "shard only (tests/plan.py), tests of no combination in the first",
    )


def combination_of(item) -> Combination | None:
    params = getattr(item, "callspec", None) and item.callspec.params.values() or ()
    return next((p for p in params if isinstance(p, Combination)), None)


def pytest_collection_modifyitems(config, items):
    def order(item):
        name = stage_of(item)
        return STAGES.index(name) if name in STAGES else len(STAGES)

    items.sort(key=order)
    if shard := config.getoption("--shard"):
        k, n = map(int, shard.split("/"))
        theirs = [item for item in items if plan.shard(combination_of(item), n) != k]
        config.hook.pytest_deselected(items=theirs)
        items[:] = [item for item in items if plan.shard(combination_of(item), n) == k]


def pytest_configure(config):
    config.stash[STAGE_SECONDS] = {}
    config.stash[SETUP_SECONDS] = {}


def pytest_sessionstart(session):
    session.config.stash[DISK] = DiskWatch()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    started = time.monotonic()
    try:
        return (yield)
    finally:
        seconds = item.config.stash[STAGE_SECONDS]
        seconds[stage_of(item)] = seconds.get(stage_of(item), 0) + time.monotonic() - started


@contextlib.contextmanager
def timed(config, what: str):
    """Count a session fixture's set-up for the summary (it is inside some stage's time)."""
    started = time.monotonic()
    try:
        yield
    finally:
        config.stash[SETUP_SECONDS][what] = time.monotonic() - started


def pytest_collection_finish(session):
    """The combinations the selected tests use: only those are rendered and built."""
    params = [
        p
        for item in session.items
        for p in getattr(item, "callspec", None) and item.callspec.params.values() or ()
    ]
    selected = dict.fromkeys(p for p in params if isinstance(p, Combination))
    session.config.stash[SELECTED] = list(selected)


@pytest.fixture(scope="session")
def template_dir(tmp_path_factory) -> Path:
    """A plain copy of the template: Copier renders it without cloning a git repo each time."""
    snapshot = tmp_path_factory.mktemp("template")
    for part in ("copier.yml", "template", "includes"):
        source = TEMPLATE_ROOT / part
        if source.is_dir():
            shutil.copytree(source, snapshot / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, snapshot / part)
    return snapshot


@pytest.fixture(scope="session")
def render(request, copie_session, template_dir) -> Renders:
    renders = Renders(copie_session, template_dir)
    selected = request.config.stash[SELECTED]
    with timed(request.config, f"render {len(selected)} combinations"):
        renders.prefetch(selected)
    return renders


def pytest_report_header():
    return f"questionnaire matrix: {len(ALL)} combinations"


REPORT_DIR = TEMPLATE_ROOT / "build" / "test-report"


def terminal_writer(config):
    """Write a line to the terminal now, even while pytest captures output."""
    capture = config.pluginmanager.getplugin("capturemanager")
    reporter = config.pluginmanager.getplugin("terminalreporter")

    def write(line: str) -> None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(line)

    return write


@pytest.fixture(scope="session")
def say(request):
    """Progress lines for the terminal, shown even while pytest captures output."""
    return terminal_writer(request.config)


@pytest.fixture(scope="session", autouse=True)
def docker_side(request):
    """Where the session needs images, the Docker side starts at once, beside the stages
    that need none: engine and base images while the renders are made, then every build."""
    if not any(item.get_closest_marker("docker") for item in request.session.items):
        yield None
        return
    from combinations import choices
    from docker_host import DockerHost
    from docker_side import DockerSide
    from image_builds import Builds

    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    for old_log in REPORT_DIR.glob("*.log"):  # the report speaks of this run alone
        old_log.unlink()
    side = DockerSide(DockerHost(choices("python_version")))
    try:
        render = request.getfixturevalue("render")
        builds = Builds(side.host, render, REPORT_DIR, terminal_writer(request.config))
        in_image: dict[str, list[Combination]] = {}
        for item in request.session.items:
            if marker := item.get_closest_marker("in_image"):
                in_image.setdefault(marker.args[0], []).append(combination_of(item))
        selected = request.config.stash[SELECTED]
        side.plan(builds, selected, in_image, full_matrix=len(selected) == len(ALL))
        yield side
    finally:
        side.stop()
        request.config.stash[SETUP_SECONDS].update(
            {f"docker side, from the start: {what}": s for what, s in side.seconds.items()}
        )


@pytest.fixture(scope="session")
def builds(request, docker_side):
    say = terminal_writer(request.config)
    builds = docker_side.ready()
    docker_host = docker_side.host
    for note in docker_host.notes:
        say(f"docker: {note}")
    selected = request.config.stash[SELECTED]
    say(f"docker build plan: {len(selected)} combinations, {len(builds.members)} distinct contexts")
    if docker_side.pruned is not None:
        say(f"docker: removed {len(docker_side.pruned)} images of contexts no longer in the plan")
    yield builds
    builds.close()
    report = {"machine": docker_host.notes, **builds.report()}
    if len(selected) == len(ALL) and not report["failed"] and not report["test_stages_failed"]:
        report["disk"] = builds.bound_build_cache().strip("; ")
        say(f"docker: build cache bounded; Docker holds {report['disk']}")
    (REPORT_DIR / "builds.json").write_text(json.dumps(report, indent=2) + "\n")
    request.config.stash[BUILD_SUMMARY] = (
        f"docker builds: {report['built']} contexts built for {report['combinations']} "
        f"combinations in {report['build_seconds']}s, {len(report['failed'])} failed; "
        f"{report['test_stages_passed']} test stages passed in {report['test_stage_seconds']}s, "
        f"{len(report['test_stages_failed'])} failed; "
        f"{report['smoke_checked']} images smoke-checked in {report['smoke_seconds']}s "
        f"({report['smoke_answers_remembered']} answers remembered from an earlier run of the "
        f"same image), {len(report['smokes_failed'])} failed; "
        f"{len(report['substitutions'])} combinations built against a substitute base; "
        f"mapping in {REPORT_DIR / 'builds.json'}"
    )


BUILD_SUMMARY = pytest.StashKey[str]()


def pytest_terminal_summary(terminalreporter, config):
    if DISK in config.stash:
        terminalreporter.write_sep("-", "disk")
        for line in config.stash[DISK].stop():
            terminalreporter.write_line(line)
    if BUILD_SUMMARY in config.stash:
        terminalreporter.write_sep("-", "docker")
        terminalreporter.write_line(config.stash[BUILD_SUMMARY])
    stages = config.stash[STAGE_SECONDS]
    if stages:
        terminalreporter.write_sep("-", "wall time per stage")
        for stage, seconds in stages.items():
            terminalreporter.write_line(f"{stage:<28} {seconds:7.0f}s")
        terminalreporter.write_line(f"{'all stages':<28} {sum(stages.values()):7.0f}s")
        for what, seconds in config.stash[SETUP_SECONDS].items():
            terminalreporter.write_line(f"  of which {what}: {seconds:.0f}s")
