"""The serving contract: endpoints, answers and refusals."""

import hashlib
import json

import pytest

from .limits import MAX_BODY_BYTES, MAX_ROWS, MODEL_DIR

EXAMPLE = json.loads((MODEL_DIR / "example-request.json").read_text())
# The example rows are iris samples of setosa, versicolor and virginica.
EXAMPLE_CLASSES = [0, 1, 2]


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_once_model_loaded(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


def test_predict_example(client):
    response = client.post("/predict", json=EXAMPLE)
    assert response.status_code == 200
    assert response.json() == {"predictions": EXAMPLE_CLASSES}


def test_predict_keeps_row_order(client):
    response = client.post("/predict", json={"instances": EXAMPLE["instances"][::-1]})
    assert response.json()["predictions"] == EXAMPLE_CLASSES[::-1]


def test_metadata_describes_the_artifact(client):
    metadata = client.get("/metadata").json()
    artifact = MODEL_DIR / metadata["artifact"]
    assert metadata["sha256"] == hashlib.sha256(artifact.read_bytes()).hexdigest()
    assert metadata["input_schema"]["n_features"] == len(EXAMPLE["instances"][0])


JSON = "application/json"
TOO_MANY_ROWS = json.dumps({"instances": [[1.0, 2.0, 3.0, 4.0]] * (MAX_ROWS + 1)})
TOO_LARGE = json.dumps({"instances": [[1.0, 2.0, 3.0, 4.0]], "pad": "x" * MAX_BODY_BYTES})


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        pytest.param("not json", JSON, 400, "invalid_json", id="not-json"),
        pytest.param("[" * 4000, JSON, 400, "invalid_json", id="deep-nesting"),
        pytest.param('{"rows": [[1, 2, 3, 4]]}', JSON, 422, "invalid_body", id="no-instances"),
        pytest.param('{"instances": []}', JSON, 422, "invalid_instances", id="empty"),
        pytest.param('{"instances": [[1, 2, 3]]}', JSON, 422, "invalid_shape", id="short-row"),
        pytest.param('{"instances": [[1, 2, "3", 4]]}', JSON, 422, "invalid_type", id="string"),
        pytest.param('{"instances": [[1, 2, true, 4]]}', JSON, 422, "invalid_type", id="bool"),
        pytest.param('{"instances": [[1, 2, NaN, 4]]}', JSON, 422, "invalid_value", id="nan"),
        pytest.param('{"instances": [[1, 1e999, 3, 4]]}', JSON, 422, "invalid_value", id="inf"),
        pytest.param(TOO_MANY_ROWS, JSON, 422, "too_many_rows", id="too-many-rows"),
        pytest.param(TOO_LARGE, JSON, 413, "body_too_large", id="too-large"),
        pytest.param(json.dumps(EXAMPLE), "text/plain", 415, "unsupported_media_type", id="text"),
    ],
)
def test_bad_input_is_refused_with_json_error(client, body, content_type, status, code):
    response = client.post("/predict", content=body, headers={"Content-Type": content_type})
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]


def test_request_id_is_echoed_or_made(client):
    given = client.get("/healthz", headers={"X-Request-ID": "trace-42"})
    assert given.headers["X-Request-ID"] == "trace-42"
    made = client.get("/healthz", headers={"X-Request-ID": "no spaces, please"})
    assert made.headers["X-Request-ID"] != "no spaces, please"
    assert len(made.headers["X-Request-ID"]) == 32


def test_metrics_count_requests_and_rows(client):
    client.post("/predict", json=EXAMPLE)
    page = client.get("/metrics")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/plain")
    assert 'http_requests_total{method="POST",route="/predict",status="200"}' in page.text
    assert "predicted_rows_total " in page.text
    assert "model_batch_rows_bucket" in page.text


def test_unknown_route_is_json_404(client):
    response = client.get("/nope")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_still_healthy_after_refusals(client):
    assert client.get("/readyz").status_code == 200
    assert client.post("/predict", json=EXAMPLE).json()["predictions"] == EXAMPLE_CLASSES
