"""Shared stages: render a combination once, then every stage reuses it."""

import json
import shutil
from pathlib import Path

import pytest

from combinations import ALL, TEMPLATE_ROOT, Combination

# Stages run in this order whatever the file names: render before build before run.
STAGES = ["test_questionnaire", "test_render", "test_build", "test_serve"]


def pytest_collection_modifyitems(items):
    def stage(item):
        name = item.module.__name__.rpartition(".")[2]
        return STAGES.index(name) if name in STAGES else len(STAGES)

    items.sort(key=stage)


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


class Renders:
    """Each combination rendered at most once per session, by pytest-copie."""

    def __init__(self, copie_session, template_dir: Path) -> None:
        self._copie = copie_session
        self._template_dir = template_dir
        self._projects: dict[str, Path] = {}

    def __call__(self, combination: Combination) -> Path:
        if combination.id not in self._projects:
            result = self._copie.copy(
                extra_answers=combination.answers, template_dir=self._template_dir
            )
            if result.exit_code != 0:
                raise AssertionError(f"{combination.id} did not render: {result.exception}")
            self._projects[combination.id] = result.project_dir
        return self._projects[combination.id]


@pytest.fixture(scope="session")
def render(copie_session, template_dir) -> Renders:
    return Renders(copie_session, template_dir)


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
    say = terminal_writer(request.config)
    builds = Builds(docker_host, render, REPORT_DIR, say)
    builds.plan(ALL)
    say(f"docker build plan: {len(ALL)} combinations, {len(builds.members)} distinct contexts")
    yield builds
    report = {"machine": docker_host.notes, **builds.report()}
    (REPORT_DIR / "builds.json").write_text(json.dumps(report, indent=2) + "\n")
    request.config.stash[BUILD_SUMMARY] = (
        f"docker builds: {report['built']} contexts built for {report['combinations']} "
        f"combinations in {report['build_seconds']}s, {len(report['failed'])} failed; "
        f"{len(report['substitutions'])} combinations built against a substitute base; "
        f"mapping in {REPORT_DIR / 'builds.json'}"
    )


BUILD_SUMMARY = pytest.StashKey[str]()


def pytest_terminal_summary(terminalreporter, config):
    if BUILD_SUMMARY in config.stash:
        terminalreporter.write_sep("-", "docker")
        terminalreporter.write_line(config.stash[BUILD_SUMMARY])
