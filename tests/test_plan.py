"""The plan itself (tests/plan.py): every combination proven, every pairing run in full."""

import itertools

from combinations import ALL, TEMPLATE_ROOT
from plan import FULL_SUITE, PYTHONS, SMOKED, SOURCE_TREES, SourceTree, summary, table


def test_every_python_and_source_tree_is_run_in_full_or_smoke_checked_once():
    planned = [(c.python_version, SourceTree.of(c)) for c in FULL_SUITE + SMOKED]
    assert len(planned) == len(set(planned))
    assert set(planned) == set(itertools.product(PYTHONS, SOURCE_TREES))
    assert {SourceTree.of(c) for c in ALL} == set(SOURCE_TREES)


def web_framework(c):
    return c.web_framework


def ml_build(c):
    return c.ml_framework, c.gpu


def model_source(c):
    return c.model_registry or c.model_source


def test_every_python_meets_every_other_answer_in_a_full_run():
    for aspect in (web_framework, ml_build, model_source):
        met = {(c.python_version, aspect(c)) for c in FULL_SUITE}
        assert met == set(itertools.product(PYTHONS, {aspect(c) for c in ALL}))


def test_every_pair_of_source_tree_answers_meets_in_a_full_run():
    for one, other in itertools.combinations((web_framework, ml_build, model_source), 2):
        met = {(one(c), other(c)) for c in FULL_SUITE}
        assert met == {(one(c), other(c)) for c in ALL}, (one.__name__, other.__name__)


def test_the_readme_shows_the_plan_as_it_is():
    readme = (TEMPLATE_ROOT / "README.md").read_text()
    assert table() in readme, "README.md: paste the table `python tests/plan.py` prints"
    assert summary() in readme
