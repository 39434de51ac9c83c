"""The plan itself (tests/plan.py): every combination proven, every pairing run in full."""

import itertools

from combinations import ALL, TEMPLATE_ROOT
from plan import FULL_SUITE, PYTHONS, SMOKED, SOURCE_TREES, SourceTree, summary, table


def test_every_python_and_source_tree_is_run_in_full_or_smoke_checked_once():
    planned = [(c.python_version, SourceTree.of(c)) for c in FULL_SUITE + SMOKED]
    assert len(planned) == len(set(planned))
    assert set(planned) == set(itertools.product(PYTHONS, SOURCE_TREES))
    assert {SourceTree.of(c) for c in ALL} == set(SOURCE_TREES)


def test_every_python_meets_every_other_answer_in_a_full_run():
    def ml_build(c):
        return c.ml_framework, c.gpu

    for aspect in (lambda c: c.web_framework, ml_build, lambda c: c.model_registry):
        met = {(c.python_version, aspect(c)) for c in FULL_SUITE}
        assert met == set(itertools.product(PYTHONS, {aspect(c) for c in ALL}))


def test_the_readme_shows_the_plan_as_it_is():
    readme = (TEMPLATE_ROOT / "README.md").read_text()
    assert table() in readme, "README.md: paste the table `python tests/plan.py` prints"
    assert summary() in readme
