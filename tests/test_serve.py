"""Stage 3: the built images serve: right answers, refusals, batching and shutdown."""

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pytest
import requests
import yaml

import reference
from combinations import DEFAULT_PYTHON, Combination, choices
from compose_check import PORT_8000
from containers import metric, serving
from docker_host import sh
from reference import IRIS

pytestmark = pytest.mark.docker

SERVED = [
    Combination(DEFAULT_PYTHON, web, ml, False, "embedded", None, "ghcr")
    for web in choices("web_framework")
    for ml in choices("ml_framework")
]
PER_WEB_FRAMEWORK = [c for c in SERVED if c.ml_framework == "sklearn"]
JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize("combination", SERVED, ids=lambda c: c.id)
def test_serves_the_sample_models_predictions(combination, builds, render):
    rows = reference.probe_rows(50)
    expected = reference.predict(render(combination) / "model", rows)
    with serving(builds.image(combination), cpus=1.5) as service:
        response = service.predict(rows)
        assert response.status_code == 200, response.text
        assert response.json() == {"predictions": expected}
        # Worker and thread counts follow the CPU limit, not the host's cores.
        sized = "workers: 1, model threads each: 1, for a CPU limit of 1.5, a memory limit of none"
        assert [m for m in (line["message"] for line in service.log_lines()) if sized in m]

        # Flask's request threads get a CPU of their own where the container owns its
        # CPUs (request_cpus.py), as a limit of 1.5 owns a machine of 2: the micro-batcher's
        # thread keeps them all. FastAPI's event loop is one thread: none is pinned.
        host = len(os.sched_getaffinity(0))
        pinned = combination.web_framework == "flask" and host <= 2
        cpus = {len(allowed) for allowed in service.thread_cpus()}
        assert cpus == ({1, host} if pinned else {host}), cpus

        refused = service.predict([[1, 2]])
        assert refused.status_code == 422
        assert refused.json()["error"]["code"] == "invalid_shape"
        assert requests.get(f"{service.url}/healthz", timeout=10).status_code == 200
        logs = service.logs()
        assert '"level": "error"' not in logs and "Traceback" not in logs, logs

        # Exec-form CMD: gunicorn gets SIGTERM, drains and exits 0 well inside the grace period.
        seconds, exit_code = service.stop(grace=30)
        assert exit_code == 0 and seconds < 25, (seconds, exit_code)


# Printed by the runtime's own Python: installers no installed library asks for (PyTorch
# needs setuptools at run time), then the test suites of the installed libraries.
WHAT_THE_RUNTIME_LEFT_BEHIND = """
import importlib.metadata as md, importlib.util, pathlib, re, sysconfig
site = pathlib.Path(sysconfig.get_paths()["purelib"])
needed = {re.split(r"[ ;<>=!~\\[]", r)[0].lower()
          for d in md.distributions() for r in d.requires or []}
print([m for m in ("pip", "setuptools", "wheel")
       if importlib.util.find_spec(m) and m not in needed])
print(sorted(str(p.relative_to(site)) for p in site.glob("*/**/tests") if p.is_dir()))
"""


@pytest.mark.parametrize("combination", SERVED, ids=lambda c: c.id)
def test_the_runtime_carries_no_installer_and_no_test_suites_of_its_libraries(combination, builds):
    command = ["docker", "run", "--rm", "--read-only", "--network", "none", "--entrypoint"]
    out = sh(*command, "python", builds.image(combination), "-c", WHAT_THE_RUNTIME_LEFT_BEHIND)
    installers, test_suites = out.splitlines()
    assert installers == "[]", f"importable in the runtime: {installers}"
    assert test_suites == "[]", f"test suites left in the runtime: {test_suites[:500]}"


SMOKE_STEP = "Start the image read-only as its own user and ask it for a prediction"
REGISTRY_MODE = Combination(DEFAULT_PYTHON, "flask", "onnxruntime", False, "registry", "s3", "ecr")
SMOKED = [*PER_WEB_FRAMEWORK, REGISTRY_MODE]


@pytest.mark.parametrize("combination", SMOKED, ids=lambda c: c.id)
def test_the_workflows_check_of_the_image_it_pushes_passes_here(
    combination, builds, render, tmp_path
):
    """The generated CI's own step, run as GitHub runs it, on the image this suite built."""
    project = shutil.copytree(render(combination), tmp_path / "checkout")
    workflow = yaml.safe_load((project / ".github/workflows/ci.yaml").read_text())
    (step,) = [s for s in workflow["jobs"]["image"]["steps"] if s.get("name") == SMOKE_STEP]
    # As a pull request runs it: this runner's platform (a push adds arm64, under QEMU).
    env = {**os.environ, "IMAGE_REF": builds.image(combination), "PLATFORMS": "linux/amd64"}
    with PORT_8000:  # the step publishes the image on 127.0.0.1:8000
        try:
            done = subprocess.run(
                ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
                cwd=project, env=env, capture_output=True, text=True, timeout=300,
            )  # fmt: skip
        finally:
            logs = subprocess.run(["docker", "logs", "runtime-under-test"], capture_output=True)
            sh("docker", "rm", "--force", "runtime-under-test", check=False)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{logs.stderr.decode()[-2000:]}"
    sent = json.loads((project / "model/example-request.json").read_text())["instances"]
    answer = json.loads((project / "answer.json").read_text())
    assert len(answer["predictions"]) == len(sent), done.stdout


MAX_ROWS, MAX_BODY_BYTES = 10, 4096


@dataclass
class Bad:
    what: str
    body: bytes
    status: int
    code: str
    method: str = "POST"
    path: str = "/predict"
    headers: dict = field(default_factory=lambda: JSON)


ROW = b"[1, 2, 3, 4]"
BAD_REQUESTS = [
    Bad("not JSON", b"{oops", 400, "invalid_json"),
    Bad("deep nesting", b"[" * 3000, 400, "invalid_json"),
    Bad("no instances", b'{"rows": []}', 422, "invalid_body"),
    Bad("empty batch", b'{"instances": []}', 422, "invalid_instances"),
    Bad("row too short", b'{"instances": [[1, 2]]}', 422, "invalid_shape"),
    Bad("flat list", b'{"instances": [1, 2, 3, 4]}', 422, "invalid_shape"),
    Bad("string", b'{"instances": [[1, "2", 3, 4]]}', 422, "invalid_type"),
    Bad("null", b'{"instances": [[1, null, 3, 4]]}', 422, "invalid_type"),
    Bad("NaN", b'{"instances": [[1, NaN, 3, 4]]}', 422, "invalid_value"),
    Bad("infinity", b'{"instances": [[1, 1e999, 3, 4]]}', 422, "invalid_value"),
    Bad("huge int", b'{"instances": [[1, 1' + b"0" * 400 + b", 3, 4]]}", 422, "invalid_value"),
    Bad("too many rows", b'{"instances": [' + b", ".join([ROW] * (MAX_ROWS + 1)) + b"]}", 422,
        "too_many_rows"),
    Bad("body too large", b" " * MAX_BODY_BYTES + b"{}", 413, "body_too_large"),
    Bad("wrong content type", b'{"instances": [[1, 2, 3, 4]]}', 415, "unsupported_media_type",
        headers={"Content-Type": "text/plain"}),
    Bad("no content type", b'{"instances": [[1, 2, 3, 4]]}', 415, "unsupported_media_type",
        headers={}),
    Bad("wrong method", b"", 405, "method_not_allowed", method="GET"),
    Bad("unknown path", b"", 404, "not_found", method="GET", path="/nope"),
]  # fmt: skip


@pytest.mark.parametrize("combination", PER_WEB_FRAMEWORK, ids=lambda c: c.web_framework)
def test_bad_requests_get_a_4xx_json_error_and_the_service_stays_healthy(combination, builds):
    limits = {"MAX_ROWS": str(MAX_ROWS), "MAX_BODY_BYTES": str(MAX_BODY_BYTES)}
    with serving(builds.image(combination), **limits) as service:
        for bad in BAD_REQUESTS:
            response = requests.request(
                bad.method, service.url + bad.path, data=bad.body, headers=bad.headers, timeout=10
            )
            error = response.json()["error"]
            assert (response.status_code, error["code"]) == (bad.status, bad.code), bad.what
            assert error["message"], bad.what
        # A body streamed without Content-Length is cut off at the limit all the same.
        chunks = (b" " * 1024 for _ in range(MAX_BODY_BYTES // 1024 + 2))
        response = requests.post(f"{service.url}/predict", data=chunks, headers=JSON, timeout=10)
        assert response.status_code == 413
        # A client that hangs up mid-body did nothing wrong here: 499, as other hang-ups.
        hang_up_mid_body(service.url)
        assert service.predict(IRIS[:3]).json() == {"predictions": [0, 0, 0]}
        page = requests.get(f"{service.url}/metrics", timeout=10).text
        lines = service.log_lines()
    assert metric(page, 'http_requests_total{method="POST",route="/predict",status="499"}') == 1
    assert not [line for line in lines if line["level"] in ("error", "critical")], lines
    assert not [line for line in lines if "exception" in line], lines


def hang_up_mid_body(url: str) -> None:
    """Send a request's headers and half its body, then close the connection."""
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps({"instances": IRIS[:3]}).encode()
    head = f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
    head += f"Content-Length: {len(body)}\r\n\r\n"
    with socket.create_connection((host, int(port)), timeout=10) as client:
        client.sendall(head.encode() + body[: len(body) // 2])
        time.sleep(0.2)  # the server has read the headers and waits for the rest
    time.sleep(0.5)  # and has seen the hang-up


@pytest.mark.parametrize("combination", PER_WEB_FRAMEWORK, ids=lambda c: c.web_framework)
def test_concurrent_requests_each_get_their_own_predictions(combination, builds, render):
    # 64 requests at once, each with distinct rows: one caller's answer must never be another's.
    rng = np.random.default_rng(1)
    batches = [IRIS[i : i + 1 + i % 3] + rng.uniform(0, 8, (i % 4, 4)).tolist() for i in range(64)]
    model_dir = render(combination) / "model"
    expected = [reference.predict(model_dir, rows) for rows in batches]
    with serving(builds.image(combination), WORKERS="2") as service:
        for _ in range(3):
            start = threading.Barrier(64)

            def call(rows, start=start):
                start.wait()
                return service.predict(rows).json()["predictions"]

            with ThreadPoolExecutor(64) as pool:
                assert list(pool.map(call, batches)) == expected
        metrics = requests.get(f"{service.url}/metrics", timeout=10).text
    model_calls = metric(metrics, "model_batch_rows_count")
    assert metric(metrics, "predicted_rows_total") == 3 * sum(len(rows) for rows in batches)
    assert model_calls < 3 * 64, "concurrent requests never shared a model call"


@pytest.mark.parametrize("combination", PER_WEB_FRAMEWORK[:1], ids=lambda c: c.web_framework)
def test_workers_default_to_what_the_memory_limit_holds(combination, builds):
    # No CPU limit (many clusters forbid them): a worker per core would each load a model.
    with serving(builds.image(combination), memory="768m", LOG_LEVEL="INFO") as service:
        lines = service.log_lines()
    (sized,) = [line["message"] for line in lines if line["message"].startswith("workers: ")]
    numbers = re.search(
        r"workers: (\d+), model threads each: \d+, for a CPU limit of ([\d.]+), "
        r"a memory limit of (\d+) MiB and WORKER_MEMORY_MB (\d+)", sized,
    )  # fmt: skip
    assert numbers, sized
    workers, cpus, memory_mib, worker_mib = map(float, numbers.groups())
    assert cpus >= 2, f"this machine's {cpus} CPUs cannot tell the memory's bound: {sized}"
    assert (memory_mib, workers) == (768, 768 // worker_mib), sized
    booted = [line for line in lines if line["message"].startswith("Booting worker")]
    assert len(booted) == workers, booted
    assert any(line["level"] == "info" for line in lines), "LOG_LEVEL=INFO logged nothing"


@pytest.mark.parametrize("combination", PER_WEB_FRAMEWORK, ids=lambda c: c.web_framework)
def test_sigterm_under_load_loses_no_accepted_request(combination, builds):
    grace = 10
    with serving(builds.image(combination), WORKERS="2", GRACEFUL_TIMEOUT=str(grace)) as service:
        outcomes: list[str] = []
        stop = threading.Event()

        def load() -> None:
            while not stop.is_set():
                try:
                    response = service.predict(IRIS[:5], timeout=grace + 5)
                    outcomes.append(str(response.status_code))
                except requests.ConnectionError:
                    outcomes.append("refused")  # the listener has closed
                    time.sleep(0.05)

        with ThreadPoolExecutor(8) as pool:
            for _ in range(8):
                pool.submit(load)
            time.sleep(2)
            served_before = outcomes.count("200")
            seconds, exit_code = service.stop(grace=grace + 20)
            stop.set()
        answered = [
            line["status"]
            for line in map(json.loads, service.logs().splitlines())
            if line.get("logger") == "access" and line["path"] == "/predict"
        ]
    assert served_before > 0
    assert set(outcomes) <= {"200", "refused"}, sorted(set(outcomes))
    # Every request the service took in, it answered, and the answer arrived.
    assert set(answered) == {200}
    assert outcomes.count("200") == len(answered)
    assert exit_code == 0
    assert seconds < grace + 5, f"took {seconds:.1f}s to stop"


@pytest.mark.parametrize("combination", PER_WEB_FRAMEWORK, ids=lambda c: c.web_framework)
def test_bad_configuration_stops_with_a_message_naming_the_variable(combination, builds):
    result = subprocess.run(
        ["docker", "run", "--rm", "--env", "WORKERS=many", "--env", "MAX_ROWS=0",
         builds.image(combination)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "WORKERS" in result.stderr and "MAX_ROWS" in result.stderr, result.stderr
