"""Renders for the suite: each combination once per session, by pytest-copie, quickly."""

import contextlib
import copy
import functools
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from unittest import mock

import jinja2
import pytest_copie.plugin
import yaml
from copier import _template
from copier._main import Worker
from pytest_copie.plugin import Copie

from combinations import Combination

_compiled: dict[tuple, object] = {}
_compile = jinja2.Environment.compile


def _compile_once(env, source, name=None, filename=None, raw=False, defer_init=False):
    """Jinja's compile, once per template source and environment settings across renders.

    Copier makes a new Jinja environment for every render, so Jinja's own template cache
    never hits: compiling the same templates again was most of a render's time.
    """
    settings = (
        type(env), env.block_start_string, env.variable_start_string, env.comment_start_string,
        env.line_statement_prefix, env.trim_blocks, env.lstrip_blocks, env.newline_sequence,
        env.keep_trailing_newline, env.optimized, env.is_async, env.finalize is None,
        tuple(sorted(env.extensions)),
    )  # fmt: skip
    key = (settings, source, name, filename, raw, defer_init)
    if key not in _compiled:
        _compiled[key] = _compile(env, source, name, filename, raw, defer_init)
    return _compiled[key]


_load_config = _template.load_template_config


@functools.cache
def _config_once(conf_path: Path, quiet: bool = False) -> dict:
    return _load_config(conf_path, quiet)


def _config_of(conf_path: Path, quiet: bool = False) -> dict:
    """copier.yml parsed once per session (the suite's template copy never changes): YAML
    parsing was a quarter of a render. A copy each time, as Copier may change it."""
    return copy.deepcopy(_config_once(conf_path, quiet))


class _YamlOnce:
    """pytest-copie's yaml, but for its per-render check that copier.yml has a
    _subdirectory: that reads the same file every time, so it is parsed once."""

    def __getattr__(self, name: str) -> object:
        return getattr(yaml, name)

    @staticmethod
    @functools.cache
    def _documents(text: str) -> tuple:
        return tuple(yaml.safe_load_all(text))

    def safe_load_all(self, text: str) -> list:
        return copy.deepcopy(list(self._documents(text)))


@contextlib.contextmanager
def quick_renders():
    """Copier as the suite runs it, a thousand times a run: every Jinja template compiled
    once, copier.yml parsed once, the template's (never a git repository) VCS looked up
    once, and without the git call per file that only matters to a destination inside a
    git repository with core.fileMode=false (the suite's never is). Renders are byte for
    byte what Copier's command line gives: test_render checks it."""
    with (
        mock.patch.object(jinja2.Environment, "compile", _compile_once),
        mock.patch.object(Worker, "_sync_git_index_executable_bit", lambda *_: None),
        mock.patch.object(_template, "load_template_config", _config_of),
        mock.patch.object(_template, "get_repo", functools.cache(_template.get_repo)),
        mock.patch.object(pytest_copie.plugin, "yaml", _YamlOnce()),
    ):
        yield


def _render_in_worker(copie: Copie, template_dir: Path, todo: list[Combination]) -> list:
    results = []
    with quick_renders():
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
            with quick_renders():
                result = self._copie.copy(
                    extra_answers=combination.answers, template_dir=self._template_dir
                )
            if result.exit_code != 0:
                raise AssertionError(f"{combination.id} did not render: {result.exception}")
            self._projects[combination.id] = result.project_dir
        return self._projects[combination.id]
