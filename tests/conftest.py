"""Shared stages: render a combination once, then every stage reuses it."""

import json
import multiprocessing
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from pytest_copie.plugin import Copie

from combinations import ALL, TEMPLATE_ROOT, Combination

# Real registry servers (S3, GCS, MLflow, HTTPS) as session fixtures.
pytest_plugins = ["servers.fixtures"]

SELECTED = pytest.StashKey[list]()
# Stages run in this order whatever the file names: render before build before run.
STAGES = [
    "test_tooling", "test_questionnaire", "test_render", "test_update", "test_dependency_updates",
    "test_build", "test_serve", "test_push", "test_registry",
]  # fmt: skip


def pytest_collection_modifyitems(items):
    def stage(item):
        name = item.module.__name__.rpartition(".")[2]
        return STAGES.index(name) if name in STAGES else len(STAGES)

    items.sort(key=stage)


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


def _render_in_worker(copie: Copie, template_dir: Path, todo: list[Combination]) -> list:
    results = []
    for c in todo:
        result = copie.copy(extra_answers=c.answers, template_dir=template_dir)
        results.append((c.id, result.project_dir, result.exit_code and str(result.exception)))
    return results


class Renders:
    """Each combination rendered at most once per session, by pytest-copie."""

    def __init__(self, copie_session: Copie, template_dir: Path) -> None:
        self._copie = copie_session
        self._template_dir = template_dir
        self._projects: dict[str, Path] = {}
        self._failures: dict[str, str] = {}

    def prefetch(self, combinations: list[Combination]) -> None:
        """Render many combinations at once on every core, a pytest-copie Copie per worker."""
        todo = [c for c in combinations if c.id not in self._projects]
        workers = min(os.cpu_count() or 1, len(todo) // 10)
        if workers < 2:
            return
        copies = [
            Copie(self._template_dir, self._copie.test_dir / f"worker{n}", self._copie.config_file)
            for n in range(workers)
        ]
        for copie in copies:
            copie.test_dir.mkdir()
        fork = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(workers, mp_context=fork) as pool:
            chunks = [todo[n::workers] for n in range(workers)]
            for results in pool.map(
                _render_in_worker, copies, [self._template_dir] * workers, chunks
            ):
                for combination_id, project_dir, failure in results:
                    if failure:
                        self._failures[combination_id] = failure
                    else:
                        self._projects[combination_id] = project_dir

    def __call__(self, combination: Combination) -> Path:
        if combination.id in self._failures:
            raise AssertionError(
                f"{combination.id} did not render: {self._failures[combination.id]}"
            )
        if combination.id not in self._projects:
            result = self._copie.copy(
                extra_answers=combination.answers, template_dir=self._template_dir
            )
            if result.exit_code != 0:
                raise AssertionError(f"{combination.id} did not render: {result.exception}")
            self._projects[combination.id] = result.project_dir
        return self._projects[combination.id]


@pytest.fixture(scope="session")
def render(request, copie_session, template_dir) -> Renders:
    renders = Renders(copie_session, template_dir)
    renders.prefetch(request.config.stash[SELECTED])
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


@pytest.fixture(scope="session")
def docker_host(request):
    """A Docker engine and base images, set up here if this machine has none."""
    from combinations import choices
    from docker_host import DockerHost

    host = DockerHost(choices("python_version"))
    say = terminal_writer(request.config)
    try:
        host.start()
        for note in host.notes:
            say(f"docker: {note}")
        yield host
    finally:
        host.stop()


@pytest.fixture(scope="session")
def builds(request, docker_host, render):
    from docker_host import Builds

    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    for old_log in REPORT_DIR.glob("*.log"):  # the report speaks of this run alone
        old_log.unlink()
    say = terminal_writer(request.config)
    builds = Builds(docker_host, render, REPORT_DIR, say)
    selected = request.config.stash[SELECTED]
    builds.plan(selected)
    say(f"docker build plan: {len(selected)} combinations, {len(builds.members)} distinct contexts")
    if len(selected) == len(ALL):
        say(f"docker: removed {len(builds.prune_stale())} images of contexts no longer in the plan")
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
        f"{len(report['substitutions'])} combinations built against a substitute base; "
        f"mapping in {REPORT_DIR / 'builds.json'}"
    )


BUILD_SUMMARY = pytest.StashKey[str]()


def pytest_terminal_summary(terminalreporter, config):
    if BUILD_SUMMARY in config.stash:
        terminalreporter.write_sep("-", "docker")
        terminalreporter.write_line(config.stash[BUILD_SUMMARY])
