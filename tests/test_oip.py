"""Stage 3: the built images speak the Open Inference Protocol (v2) to clients that other
projects wrote, for the sample models and for an image model with an N-d input."""

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import kserve
import numpy as np
import pytest
import requests
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

import digits
import reference
from combinations import DEFAULT_PYTHON, Combination, choices
from containers import metric, read_only, serving

pytestmark = pytest.mark.docker

SKLEARN = [
    Combination(DEFAULT_PYTHON, web, "sklearn", False, "embedded", None, "ghcr")
    for web in choices("web_framework")
]
# Each web framework once, each ML framework that takes an image model once.
IMAGE_MODELS = [
    Combination(DEFAULT_PYTHON, "fastapi", "onnxruntime", False, "embedded", None, "ghcr"),
    Combination(DEFAULT_PYTHON, "flask", "pytorch", False, "embedded", None, "ghcr"),
]


def host_port(url: str) -> str:
    return url.removeprefix("http://")


@pytest.mark.parametrize("combination", SKLEARN, ids=lambda c: c.web_framework)
def test_tritons_client_and_kserves_get_the_models_own_answers(combination, builds, render, say):
    model_dir = render(combination) / "model"
    name = json.loads((model_dir / "metadata.json").read_text())["name"]
    rows = np.asarray(reference.probe_rows(20), np.float32)  # 170 rows, iris and beyond
    expected = reference.predict(model_dir, rows.tolist())
    with serving(builds.image(combination)) as service:
        client = triton.InferenceServerClient(host_port(service.url))
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready(name) and not client.is_model_ready("nope")
        assert client.get_server_metadata()["extensions"] == ["binary_tensor_data"]
        metadata = client.get_model_metadata(name)
        assert metadata["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 4]}]
        assert metadata["outputs"] == [{"name": "class", "datatype": "INT64", "shape": [-1]}]

        # The client's defaults: binary tensors, both ways.
        features = triton.InferInput("features", list(rows.shape), "FP32")
        features.set_data_from_numpy(rows)
        answer = client.infer(name, [features])
        assert answer.as_numpy("class").tolist() == expected
        assert answer.get_output("class")["parameters"] == {"binary_data_size": 8 * len(rows)}
        # JSON both ways, with a request id, and the model's version named.
        features.set_data_from_numpy(rows, binary_data=False)
        wanted = [triton.InferRequestedOutput("class", binary_data=False)]
        answer = client.infer(name, [features], "1", outputs=wanted, request_id="trace-7")
        assert answer.get_response()["id"] == "trace-7"
        assert answer.get_output("class")["data"] == expected
        # Refusals arrive as the client's own exception, with the protocol's status.
        wrong = triton.InferInput("features", [2, 5], "FP32")
        wrong.set_data_from_numpy(np.ones((2, 5), np.float32))
        with pytest.raises(InferenceServerException, match="the model takes 'features'") as bad:
            client.infer(name, [wrong])
        assert bad.value.status() == "400"
        with pytest.raises(InferenceServerException, match="no model 'nope'") as unknown:
            client.infer("nope", [features])
        assert unknown.value.status() == "404"
        client.close()

        said = asyncio.run(kserve_client_calls(service.url, name, rows, expected))
        logs = service.logs()
    assert '"level": "error"' not in logs and "Traceback" not in logs, logs
    say(f"tritonclient: live, ready, metadata {metadata['inputs']} -> {metadata['outputs']}; "
        f"infer {len(rows)} rows binary and JSON; 400 {bad.value.message()!r}; "
        f"404 {unknown.value.message()!r}; {said}")  # fmt: skip


async def kserve_client_calls(url: str, name: str, rows: np.ndarray, expected: list) -> str:
    """KServe's own REST client, as its v2 protocol: readiness, then infer, JSON and binary."""
    client = kserve.InferenceRESTClient(kserve.RESTConfig(protocol="v2", retries=0))
    try:
        assert await client.is_server_live(url) and await client.is_server_ready(url)
        assert await client.is_model_ready(url, name)
        answers = []
        for binary in (False, True):
            features = kserve.InferInput("features", list(rows.shape), "FP32")
            features.set_data_from_numpy(rows, binary_data=binary)
            request = kserve.InferRequest(name, [features], request_id=f"kserve-{binary}")
            answer = await client.infer(url, request, model_name=name)
            assert (answer.id, answer.model_name) == (f"kserve-{binary}", name)
            assert answer.outputs[0].as_numpy().tolist() == expected
            answers.append(answer.outputs[0].datatype)
    finally:
        await client.close()
    return f"kserve InferenceRESTClient(v2): ready, infer JSON and binary -> {answers}"


@pytest.mark.parametrize("combination", IMAGE_MODELS, ids=lambda c: c.id)
def test_an_image_model_takes_nd_tensors_on_both_endpoints(combination, builds, tmp_path):
    model = digits.model_dir(combination.ml_framework, tmp_path)
    images = digits.IMAGES[:64]
    expected = reference.predict(model, images.tolist())  # the artifact, loaded directly
    mount = read_only(model, "/opt/digits")
    with serving(builds.image(combination), mounts=(mount,), MODEL_DIR="/opt/digits") as service:
        described = requests.get(f"{service.url}/metadata", timeout=10).json()
        assert described["inputs"] == [{"name": "pixels", "datatype": "FP32", "shape": [-1, 8, 8]}]
        infer = f"{service.url}/v2/models/digits/infer"

        # Nested rows on /predict; nested and flat row-major data on infer; binary tensors.
        answer = service.predict(images[:5].tolist())
        assert answer.json() == {"predictions": expected[:5]}, answer.text
        for data in (images[:5].tolist(), images[:5].reshape(-1).tolist()):
            tensor = {"name": "pixels", "datatype": "FP32", "shape": [5, 8, 8], "data": data}
            answer = requests.post(infer, json={"inputs": [tensor]}, timeout=10)
            (output,) = answer.json()["outputs"]
            assert (output["shape"], output["data"]) == ([5], expected[:5])
        client = triton.InferenceServerClient(host_port(service.url))
        pixels = triton.InferInput("pixels", [64, 8, 8], "FP32")
        pixels.set_data_from_numpy(images)
        assert client.infer("digits", [pixels]).as_numpy("digit").tolist() == expected
        client.close()

        # An image of another size is refused by both, with what the model takes.
        narrow = service.predict(images[:1, :, :7].tolist())
        assert (narrow.status_code, narrow.json()["error"]["code"]) == (422, "invalid_shape")
        tensor = {"name": "pixels", "datatype": "FP32", "shape": [1, 8, 7], "data": [0.0] * 56}
        refused = requests.post(infer, json={"inputs": [tensor]}, timeout=10)
        assert refused.status_code == 400 and "[-1, 8, 8]" in refused.json()["error"], refused.text

        # 64 callers at once, each its own images, half on each endpoint: each gets its own.
        calls = [(i % 2, images[i : i + 1 + i % 3]) for i in range(64)]
        wanted = [expected[i : i + 1 + i % 3] for i in range(64)]
        before = requests.get(f"{service.url}/metrics", timeout=10).text
        for _ in range(3):
            start = threading.Barrier(64)

            def call(job, start=start):
                on_infer, rows = job
                start.wait()
                if not on_infer:
                    return service.predict(rows.tolist()).json()["predictions"]
                tensor = {"name": "pixels", "datatype": "FP32", "shape": list(rows.shape)}
                body = {"inputs": [{**tensor, "data": rows.reshape(-1).tolist()}]}
                return requests.post(infer, json=body, timeout=30).json()["outputs"][0]["data"]

            with ThreadPoolExecutor(64) as pool:
                assert list(pool.map(call, calls)) == wanted
        after = requests.get(f"{service.url}/metrics", timeout=10).text
        logs = service.logs()
    model_calls = metric(after, "model_batch_rows_count") - metric(before, "model_batch_rows_count")
    assert model_calls < 3 * 64, "concurrent requests never shared a model call"
    assert '"level": "error"' not in logs and "Traceback" not in logs, logs
