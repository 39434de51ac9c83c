"""Stage 3, when the model goes wrong in a running image: a model failing every call, a row
it chokes on, an old GPU driver. Each fault stays its own: the service answers fast,
isolates what it can, and says what is wrong (overload and clients that give up:
tests/test_serve_load.py).
"""

import collections
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
import yaml

import reference
from combinations import DEFAULT_PYTHON, Combination, choices
from containers import metric, read_only, serving
from docker_host import sh
from reference import IRIS

pytestmark = pytest.mark.docker

PER_WEB_FRAMEWORK = [
    Combination(DEFAULT_PYTHON, web, "sklearn", False, "embedded", None, "ghcr")
    for web in choices("web_framework")
]
JSON = {"Content-Type": "application/json"}


STICKY_FAILURE = """

# The test's fault: every call after the warm-up fails, as after a sticky CUDA error.
_loaded_predict, _calls = Model.predict, []


def _failing_after_warm_up(self, rows):
    _calls.append(len(rows))
    if len(_calls) > 1:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")
    return _loaded_predict(self, rows)


Model.predict = _failing_after_warm_up
"""


@pytest.mark.parametrize("combination", PER_WEB_FRAMEWORK, ids=lambda c: c.web_framework)
def test_a_model_failing_every_call_gets_fast_503s_and_its_worker_replaced(
    combination, builds, render, tmp_path
):
    project = render(combination)
    package = yaml.safe_load((project / ".copier-answers.yml").read_text())["package_name"]
    patched = tmp_path / "model.py"
    patched.write_text((project / "src" / package / "model.py").read_text() + STICKY_FAILURE)
    mount = read_only(patched, f"/app/src/{package}/model.py")
    with serving(builds.image(combination), WORKERS="1", mounts=(mount,)) as service:
        started, answers = time.monotonic(), []
        with ThreadPoolExecutor(16) as pool:
            for wave in range(4):  # a call or more per wave
                rows = [[IRIS[i]] for i in range(16 * wave, 16 * wave + 16)]
                answers += pool.map(service.predict, rows)
        seconds = time.monotonic() - started
        replaced = False
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # unready, then a fresh worker: ready again
            response = service.readyz()
            replaced |= response is not None and response.status_code == 503
            if replaced and response is not None and response.status_code == 200:
                break
            time.sleep(0.2)
        page = requests.get(f"{service.url}/metrics", timeout=10).text
        lines = service.log_lines()
    codes = collections.Counter((a.status_code, a.json()["error"]["code"]) for a in answers)
    assert {status for status, _ in codes} == {503}, codes  # for another replica to answer
    assert codes[503, "model_failing"] >= 16, codes
    assert seconds < 10, f"64 failing requests took {seconds:.1f}s"
    assert replaced and response.status_code == 200, "the failing worker was not replaced"
    failures = [line for line in lines if "CUDA error" in line["message"]]
    assert [line["level"] for line in failures] == ["error", "critical"], failures
    assert "exception" in failures[0], "the first failure's traceback"
    assert metric(page, 'model_failures_total{code="model_failing"}') >= 16


# An NVIDIA driver that supports CUDA 12.4 only, as on a node that was never upgraded: the
# one entry point that says the version, built here (the images hold no compiler).
OLD_DRIVER = "int cuDriverGetVersion(int *version) { *version = 12040; return 0; }\n"


def gpu_image(python: str, ml: str) -> Combination:
    return Combination(python, "fastapi", ml, True, "embedded", None, "ghcr")


# What each image says of that driver. XGBoost 3.2, the last for Python 3.11, is built with
# CUDA 12, which a 12.4 driver runs: that image blames the missing GPU instead.
OLD_DRIVER_ANSWERS = {
    gpu_image(DEFAULT_PYTHON, "onnxruntime"): ("supports CUDA up to 12.4", "driver 580 or newer"),
    gpu_image(DEFAULT_PYTHON, "pytorch"): ("supports CUDA up to 12.4", "driver 580 or newer"),
    gpu_image(DEFAULT_PYTHON, "xgboost"): ("supports CUDA up to 12.4", "driver 580 or newer"),
    gpu_image("3.11", "xgboost"): ("no usable GPU", "CUDA 12 libraries"),
}


@pytest.mark.parametrize(
    "combination", OLD_DRIVER_ANSWERS, ids=lambda c: f"py{c.python_version}-{c.ml_framework}-gpu"
)
def test_a_gpu_image_on_an_old_driver_says_which_driver_it_needs(combination, builds, tmp_path):
    (tmp_path / "driver.c").write_text(OLD_DRIVER)
    sh("gcc", "-shared", "-fPIC", "-o", tmp_path / "libcuda.so.1", tmp_path / "driver.c")
    mount = read_only(tmp_path / "libcuda.so.1", "/opt/driver/libcuda.so.1")
    image = builds.image(combination)
    with serving(image, wait=False, mounts=(mount,), LD_LIBRARY_PATH="/opt/driver") as service:
        error = service.wait_unready()
    for said in OLD_DRIVER_ANSWERS[combination]:
        assert said in error["message"], error


def poisoned_model(sample: Path, into: Path) -> Path:
    """The sample's metadata around a forest that takes exponentials first: a length of
    1000 overflows to infinity inside the model, which then fails the call. Validation,
    which sees a fine float32, cannot know."""
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    iris = load_iris()
    forest = RandomForestClassifier(n_estimators=10, random_state=0)
    model = make_pipeline(FunctionTransformer(np.exp), forest).fit(iris.data, iris.target)
    return reference.model_dir(model, sample, into)


@pytest.mark.parametrize("combination", PER_WEB_FRAMEWORK, ids=lambda c: c.web_framework)
def test_a_row_the_model_fails_on_fails_only_its_own_request(combination, builds, render, tmp_path):
    model_dir = poisoned_model(render(combination) / "model", tmp_path)
    bodies = [IRIS[i : i + 3] for i in range(0, 96, 3)]
    bodies[7] = [*IRIS[21:23], [1000.0, 3.0, 1.4, 0.2]]
    expected = reference.predict(model_dir, IRIS[:96])
    start = threading.Barrier(len(bodies))

    def call(i: int) -> requests.Response:
        start.wait()
        headers = {**JSON, "X-Request-ID": f"request-{i}"}
        body = {"instances": bodies[i]}
        return requests.post(f"{service.url}/predict", json=body, headers=headers, timeout=30)

    mount = read_only(model_dir, "/opt/poisoned")
    with serving(builds.image(combination), MODEL_DIR="/opt/poisoned", mounts=(mount,)) as service:
        with ThreadPoolExecutor(len(bodies)) as pool:
            answers = list(pool.map(call, range(len(bodies))))
        page = requests.get(f"{service.url}/metrics", timeout=10).text
        service.stop(grace=10)
        lines = service.log_lines()
    poisoned = answers.pop(7)
    assert poisoned.status_code == 500, poisoned.text
    assert poisoned.json()["error"]["code"] == "prediction_failed"
    assert poisoned.headers["X-Request-ID"] == "request-7"
    assert [answer.status_code for answer in answers] == [200] * len(answers)
    assert [answer.json()["predictions"] for answer in answers] == [
        expected[i : i + 3] for i in range(0, 96, 3) if i != 21
    ]
    assert metric(page, "model_batch_rows_count") < len(bodies), "no call was ever shared"
    errors = [line for line in lines if line["level"] == "error"]
    assert [line["request_id"] for line in errors] == ["request-7"], errors
