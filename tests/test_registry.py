"""Stage 4: registry mode for real. Built images fetch the sample model from real servers.

An S3 API (moto), a GCS emulator, an MLflow tracking server with its model registry
and a static HTTPS server with its own CA run on 127.0.0.1; each image runs
read-only on the host network, with the model cache on a volume, as in Kubernetes.
"""

import json
import subprocess
import time

import pytest
import requests

import reference
from containers import serving
from docker_host import sh
from published import CACHE, CREDENTIAL_STRINGS, FETCHING, FLAVORED_BOOSTERS, fetching, short_id

pytestmark = pytest.mark.docker


@pytest.mark.parametrize("combination", FETCHING + FLAVORED_BOOSTERS, ids=short_id)
def test_fetches_the_sample_and_answers_as_the_artifact_does(
    combination, builds, render, published, time_to_ready
):
    model_dir = render(combination) / "model"
    model = published(combination, model_dir)
    rows = reference.probe_rows(50)
    expected = reference.predict(model_dir, rows)
    image = builds.image(combination)
    started = time.monotonic()
    with serving(
        image, host_network=True, mounts=(CACHE, *model.mounts), **model.settings()
    ) as service:
        time_to_ready[combination.id] = round(time.monotonic() - started, 2)
        response = service.predict(rows)
        assert response.status_code == 200, response.text
        assert response.json() == {"predictions": expected}
        metadata = requests.get(f"{service.url}/metadata", timeout=10).json()
        assert metadata["sha256"] == model.sha256
        lines = service.log_lines()
    assert not [line for line in lines if line["level"] in ("error", "critical")], lines
    assert any("fetched the model" in line["message"] for line in lines), lines
    for secret in CREDENTIAL_STRINGS:
        assert secret not in json.dumps(lines), "a credential reached the logs"


@pytest.mark.parametrize("combination", FETCHING, ids=short_id)
def test_no_credential_in_the_image_its_history_or_the_rendered_files(combination, builds, render):
    image = builds.image(combination)
    history = sh("docker", "history", "--no-trunc", image)
    config = sh("docker", "image", "inspect", image)
    project = render(combination)
    rendered = "".join(
        path.read_text(errors="replace")
        for pattern in ("compose.yaml", "k8s/**/*.yaml", "Dockerfile", ".env*")
        for path in project.glob(pattern)
    )
    for secret in CREDENTIAL_STRINGS:
        assert secret not in history + config + rendered, secret
    assert not image_holds(image, [secret.encode() for secret in CREDENTIAL_STRINGS])


def image_holds(image: str, needles: list[bytes]) -> list[bytes]:
    """The needles found anywhere in `docker save` of the image (every layer, every file)."""
    found, tail = set(), b""
    overlap = max(map(len, needles))
    with subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE) as save:
        while chunk := save.stdout.read(1 << 22):
            window = tail + chunk
            found.update(needle for needle in needles if needle in window)
            tail = window[-overlap:]
    assert save.returncode == 0
    return sorted(found)


# Every registry's local stand-in, each web framework twice.
COMPOSED = [
    fetching("fastapi", "s3"),
    fetching("flask", "gcs"),
    fetching("fastapi", "mlflow"),
    fetching("flask", "https"),
]


@pytest.mark.in_image("compose")
@pytest.mark.parametrize("combination", COMPOSED, ids=short_id)
def test_compose_up_serves_the_sample_from_the_local_registry(combination, builds, say):
    """What the copy message tells every user to run, in registry mode (run on the Docker
    side, behind the builds: tests/compose_check.py)."""
    failure, answer, notes = builds.compose(combination)
    for line in notes:
        say(f"docker: {line}")
    assert not failure, failure
    assert answer == {"predictions": [0, 1, 2]}
