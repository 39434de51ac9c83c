"""The suite's plan: which stage proves what, for which combinations.

    .venv/bin/python tests/plan.py     # prints it, as the README shows it

Every combination is rendered and checked, and every distinct build context is built:
those stages cost little per combination. What runs inside the images follows what can
change behaviour there:

- A *source tree* (web framework, ML build, model source) decides the code, tests, sample
  and Dockerfile steps in the image. The Python version changes only the base image and
  the locks: the build stage proves that, tree by tree, on the renders themselves.
- The generated tests follow one answer each, or two where they meet: conftest.py the web
  framework (the app every API test drives), test_objectives.py the booster,
  test_fetch.py and registry_server.py the model registry, with a case for the MLflow
  flavour of an ML framework. No test is written for all three. So the generated suite runs on a
  covering set of source trees, each in one Python's image: every ML build with every
  model source once, in questionnaire order; along them the Pythons take turns, newest
  first, and the web framework changes after each round of Pythons. That puts every pair
  of web framework, ML build and model source, and every Python with each of them, in
  some full run (the plan's own test checks both), at half the runs of one per tree.
- Every other image is smoke-checked: started as production starts it, it answers the
  probe rows exactly as the artifact does when loaded directly.
- The container registry changes no file in the build context (.dockerignore keeps CI
  and Kubernetes files out): its combinations share the image of their context.
"""

from __future__ import annotations

import functools
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from combinations import ALL, Combination, choices  # noqa: E402

PYTHONS = choices("python_version")
# Any container registry would do: it changes nothing in the image.
CONTAINER_REGISTRY = choices("container_registry")[0]


@dataclass(frozen=True)
class SourceTree:
    web_framework: str
    ml_framework: str
    gpu: bool
    model_source: str
    model_registry: str | None

    @classmethod
    def of(cls, c: Combination) -> SourceTree:
        return cls(c.web_framework, c.ml_framework, c.gpu, c.model_source, c.model_registry)

    @property
    def id(self) -> str:
        ml = f"{self.ml_framework}-gpu" if self.gpu else self.ml_framework
        return f"{self.web_framework}-{ml}-{self.model_registry or self.model_source}"

    def at(self, python: str) -> Combination:
        """This tree's combination for a Python version (and the first container registry)."""
        return Combination(
            python, self.web_framework, self.ml_framework, self.gpu, self.model_source,
            self.model_registry, CONTAINER_REGISTRY,
        )  # fmt: skip


SOURCE_TREES = list(dict.fromkeys(SourceTree.of(c) for c in ALL))


def _suite_pythons() -> dict[SourceTree, str]:
    """The covering set's trees and the Python each runs the generated suite in: the k-th
    (ML build, model source) pair in questionnaire order takes the (k mod n)-th newest
    Python, and the web framework changes every n pairs (n Pythons; see the docstring)."""
    webs = choices("web_framework")
    pairs = dict.fromkeys((t.ml_framework, t.gpu, t.model_source, t.model_registry)
                          for t in SOURCE_TREES)  # fmt: skip
    suite = {}
    for k, (ml, gpu, source, registry) in enumerate(pairs):
        web = webs[k // len(PYTHONS) % len(webs)]
        suite[SourceTree(web, ml, gpu, source, registry)] = PYTHONS[-1 - k % len(PYTHONS)]
    return suite


SUITE_PYTHON = _suite_pythons()
FULL_SUITE = [tree.at(python) for tree, python in SUITE_PYTHON.items()]
SMOKED = [
    tree.at(python)
    for tree in SOURCE_TREES
    for python in PYTHONS
    if python != SUITE_PYTHON.get(tree)
]


# What an ML build's layer costs a cold shard, roughly: the GPU builds download gigabytes.
ML_BUILD_WEIGHT = {
    ("pytorch", True): 6, ("onnxruntime", True): 4, ("pytorch", False): 2, ("xgboost", True): 2,
}  # fmt: skip


@functools.cache  # asked for every collected test
def shards(n: int) -> dict[tuple[str, str, bool], int]:
    """Each Python and ML build (one ML layer, and every image built on it) to one of n
    shards, numbered from 1: the heaviest first, each to the shard with the least so far.
    No shard builds another's images: each Python and ML build is in one shard only."""
    builds = sorted(
        dict.fromkeys((c.python_version, c.ml_framework, c.gpu) for c in ALL),
        key=lambda b: -ML_BUILD_WEIGHT.get(b[1:], 1),
    )  # a stable sort of questionnaire order: every job computes the same shards
    load, shard_of = [0] * n, {}
    for python_and_build in builds:
        lightest = load.index(min(load))
        shard_of[python_and_build] = lightest + 1
        load[lightest] += ML_BUILD_WEIGHT.get(python_and_build[1:], 1)
    return shard_of


def shard(c: Combination | None, n: int) -> int:
    """The shard a test of combination c runs in; tests of no combination run in shard 1."""
    return 1 if c is None else shards(n)[c.python_version, c.ml_framework, c.gpu]


def table() -> str:
    """The plan as a Markdown table: a row per source tree, a column per Python."""
    head = ["source tree (web-ML build-model source)", *(f"Python {p}" for p in PYTHONS)]
    rows = [
        [f"`{tree.id}`", *("suite" if p == SUITE_PYTHON.get(tree) else "smoke" for p in PYTHONS)]
        for tree in SOURCE_TREES
    ]
    lines = [head, ["---"] * len(head), *rows]
    return "\n".join(f"| {' | '.join(cells)} |" for cells in lines) + "\n"


def summary() -> str:
    said = (
        f"{len(ALL)} combinations rendered and checked; every distinct build context built; "
        f"{len(SOURCE_TREES)} source trees; the generated suite runs in {len(FULL_SUITE)} "
        f"images, a covering set of trees each in one Python, and the {len(SMOKED)} other "
        f"images are smoke-checked."
    )
    return textwrap.fill(said, 90, break_on_hyphens=False) + "\n"


if __name__ == "__main__":
    print(summary())
    print(table(), end="")
