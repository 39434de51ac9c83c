"""Stage 3: each web framework x ML framework image serves the sample model's own answers."""

import subprocess
import time

import numpy as np
import pytest
import requests
from sklearn.datasets import load_iris

import reference
from combinations import Combination, choices
from docker_host import sh

pytestmark = pytest.mark.docker

SERVED = [
    Combination("3.13", web, ml, False, "embedded", None, "ghcr")
    for web in choices("web_framework")
    for ml in choices("ml_framework")
]
GRACE_SECONDS = 30


@pytest.fixture
def container(request, builds):
    """Run the combination's image, published on loopback only; removed by id afterwards."""
    combination = request.param
    container_id = sh(
        "docker", "run", "--detach", "--read-only", "--tmpfs", "/tmp",
        "--publish", "127.0.0.1::8000", builds.image(combination),
    ).strip()  # fmt: skip
    try:
        port = sh("docker", "port", container_id, "8000/tcp").split(":")[-1].strip()
        yield container_id, f"http://127.0.0.1:{port}"
    finally:
        sh("docker", "rm", "--force", container_id, check=False)


def container_logs(container_id: str) -> str:
    result = subprocess.run(["docker", "logs", container_id], capture_output=True, text=True)
    return result.stdout + result.stderr  # gunicorn logs to stderr


def wait_ready(container_id: str, url: str, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        state = sh("docker", "inspect", "--format", "{{.State.Status}}", container_id).strip()
        assert state == "running", container_logs(container_id)
        time.sleep(0.5)
    raise AssertionError(f"not ready in {seconds}s:\n{container_logs(container_id)}")


@pytest.mark.parametrize("container", SERVED, ids=lambda c: c.id, indirect=True)
def test_serves_the_sample_models_predictions(container, render, request):
    container_id, url = container
    combination = request.node.callspec.params["container"]
    wait_ready(container_id, url)

    rows = load_iris().data.tolist() + np.random.default_rng(0).uniform(0, 8, (50, 4)).tolist()
    expected = reference.predict(render(combination) / "model", rows)
    response = requests.post(f"{url}/predict", json={"instances": rows}, timeout=30)
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": expected}

    refused = requests.post(f"{url}/predict", json={"instances": [[1, 2]]}, timeout=10)
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "invalid_shape"
    assert requests.get(f"{url}/healthz", timeout=10).status_code == 200
    logs = container_logs(container_id)
    assert '"level": "error"' not in logs and "Traceback" not in logs, logs

    # Exec-form CMD: gunicorn gets SIGTERM, drains and exits 0 well inside the grace period.
    started = time.monotonic()
    sh("docker", "stop", "--time", GRACE_SECONDS, container_id, timeout=GRACE_SECONDS + 30)
    assert time.monotonic() - started < GRACE_SECONDS - 5
    assert sh("docker", "inspect", "--format", "{{.State.ExitCode}}", container_id).strip() == "0"
