"""The servers: how each is started, where it answers, the body it takes, its candidate
settings; serving one, ready and answering right, for the length of a run."""

import argparse
import json
import os
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from .config import (
    BENCH,
    GENERATED,
    INFER_PATH,
    OVERLOAD_ROWS,
    READY_TIMEOUT_S,
    ROW,
    VENVS,
    WORK,
    infer_request,
    instances,
    log,
    server_of,
)  # fmt: skip
from .prepare import libpython_dir, mlserver_repository
from .processes import Container, Process


@dataclass
class Spec:
    name: str
    predict_path: str
    ready_path: str
    health_path: str
    # How the body carries rows and the answer the predictions: "instances" ({"predictions"}
    # back), "bare" (instances in, a bare list back) or "oip" (the Open Inference Protocol).
    protocol: str = "instances"

    def body(self, rows: list) -> str:
        return infer_request(rows) if self.protocol == "oip" else instances(rows)

    def predictions(self, answer: object) -> object:
        if self.protocol == "oip":
            output = answer["outputs"][0]
            if len(output["shape"]) == 2 and output["shape"][1] > 1:
                # Each class's probability (MLServer's LightGBM runtime): the likeliest class.
                width = output["shape"][1]
                rows = [output["data"][i : i + width] for i in range(0, len(output["data"]), width)]
                return [max(range(width), key=row.__getitem__) for row in rows]
            return list(output["data"])
        return answer if self.protocol == "bare" else answer.get("predictions")

    @property
    def row_body(self) -> str:
        return self.body([ROW])

    @property
    def overload_body(self) -> str:
        return self.body(OVERLOAD_ROWS)


# The model's own readiness: Triton says the server is ready before its model is.
OIP = {"ready_path": "/v2/models/{model}/ready", "health_path": "/v2/health/live",
       "protocol": "oip"}  # fmt: skip
SPECS = {
    "fastapi": Spec("fastapi", "/predict", "/readyz", "/healthz"),
    "fastapi-oip": Spec("fastapi-oip", INFER_PATH, "/readyz", "/healthz", "oip"),
    "flask": Spec("flask", "/predict", "/readyz", "/healthz"),
    "flask-oip": Spec("flask-oip", INFER_PATH, "/readyz", "/healthz", "oip"),
    "mlflow": Spec("mlflow", "/invocations", "/ping", "/ping"),
    "bentoml": Spec("bentoml", "/predict", "/readyz", "/livez"),
    "bentoml-batched": Spec("bentoml-batched", "/predict", "/readyz", "/livez", "bare"),
    "litserve-batched": Spec("litserve-batched", "/predict", "/health", "/health"),
    "mlserver": Spec("mlserver", INFER_PATH, **OIP),
    "pytriton": Spec("pytriton", INFER_PATH, **OIP),
}

# The settings each server "at its best" is tried with; a short run of each picks the one
# with the highest rps. The first of each list is the server's own default.
CANDIDATES: dict[str, list[dict[str, str]]] = {
    "bentoml-batched": [
        {"BENCH_MAX_BATCH_SIZE": "100", "BENCH_MAX_LATENCY_MS": "60000"},
        {"BENCH_MAX_BATCH_SIZE": "64", "BENCH_MAX_LATENCY_MS": "100"},
        {"BENCH_MAX_BATCH_SIZE": "32", "BENCH_MAX_LATENCY_MS": "20"},
    ],
    "litserve-batched": [
        {"BENCH_MAX_BATCH_SIZE": "64", "BENCH_BATCH_TIMEOUT_S": "0.005", "BENCH_FAST_QUEUE": "0"},
        {"BENCH_MAX_BATCH_SIZE": "64", "BENCH_BATCH_TIMEOUT_S": "0.005", "BENCH_FAST_QUEUE": "1"},
        {"BENCH_MAX_BATCH_SIZE": "16", "BENCH_BATCH_TIMEOUT_S": "0.001", "BENCH_FAST_QUEUE": "1"},
        {"BENCH_MAX_BATCH_SIZE": "128", "BENCH_BATCH_TIMEOUT_S": "0.01", "BENCH_FAST_QUEUE": "1"},
    ],
    # MLServer batches adaptively only with both a batch size and a wait; its parallel
    # workers (0: inference in the front process) get the batches round-robin.
    "mlserver": [
        {},
        {"BENCH_MAX_BATCH_SIZE": "32", "BENCH_MAX_BATCH_TIME_S": "0.002"},
        {"BENCH_MAX_BATCH_SIZE": "64", "BENCH_MAX_BATCH_TIME_S": "0.005"},
        {"BENCH_MAX_BATCH_SIZE": "128", "BENCH_MAX_BATCH_TIME_S": "0.01"},
        {
            "BENCH_MAX_BATCH_SIZE": "32",
            "BENCH_MAX_BATCH_TIME_S": "0.002",
            "BENCH_PARALLEL_WORKERS": "0",
        },
    ],  # fmt: skip
    # Triton's dynamic batcher: PyTriton's default max_batch_size is 4.
    "pytriton": [
        {"BENCH_MAX_BATCH_SIZE": "4", "BENCH_MAX_QUEUE_DELAY_US": "0"},
        {"BENCH_MAX_BATCH_SIZE": "32", "BENCH_MAX_QUEUE_DELAY_US": "0"},
        {"BENCH_MAX_BATCH_SIZE": "64", "BENCH_MAX_QUEUE_DELAY_US": "500"},
        {"BENCH_MAX_BATCH_SIZE": "128", "BENCH_MAX_QUEUE_DELAY_US": "2000"},
        {"BENCH_MAX_BATCH_SIZE": "256", "BENCH_MAX_QUEUE_DELAY_US": "5000"},
    ],
}


def short(settings: dict[str, str]) -> str:
    """BENCH_MAX_BATCH_SIZE=64 -> max_batch_size=64, for the tables."""
    if not settings:
        return "defaults"
    return " ".join(f"{k.removeprefix('BENCH_').lower()}={v}" for k, v in settings.items())


@dataclass
class Bench:
    """What every server run needs: the options, the images, the model and its answers."""

    args: argparse.Namespace
    images: dict[str, str]
    model: Path  # the artifact
    model_name: str  # as the render's metadata.json names it
    mlflow_dir: Path | None
    check_rows: list
    expected: list

    def spec(self, name: str) -> Spec:
        """The server's spec, its paths naming this run's model."""
        spec = SPECS[name]
        return replace(
            spec,
            predict_path=spec.predict_path.format(model=self.model_name),
            ready_path=spec.ready_path.format(model=self.model_name),
        )


def start(bench: Bench, name: str, settings: dict[str, str], port: int):
    args = bench.args
    if name in GENERATED:  # one image, measured on /predict and on the protocol's infer
        framework = server_of(name)
        return Container(name, bench.images[framework], port, args.workers, args.env)
    if name == "mlserver":
        repository = mlserver_repository(
            bench.model, bench.model_name, args.ml, port, args.workers, settings
        )
        command = [VENVS["mlserver"] / "bin" / "mlserver", "start", repository]
        return Process(name, command, {}, WORK)
    if name == "pytriton":
        python = VENVS["pytriton"] / "bin" / "python"
        env = {"BENCH_MODEL": str(bench.model), "BENCH_WORKERS": str(args.workers),
               "LD_LIBRARY_PATH": libpython_dir(python), **settings}  # fmt: skip
        return Process(name, [python, BENCH / "pytriton_server.py", str(port)], env, BENCH)
    bin_dir = VENVS["anchors"] / "bin"
    path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"  # mlflow execs `uvicorn`
    if name == "mlflow":
        serve = "models serve --env-manager local --host 127.0.0.1".split()
        command = [bin_dir / "mlflow", *serve, "-m", bench.mlflow_dir, "--port", str(port),
                   "--workers", str(args.workers)]  # fmt: skip
        return Process(name, command, {"PATH": path}, WORK)
    # The services read the model path, the worker count and their settings from the environment.
    env = {"PATH": path, "BENCH_MODEL": str(bench.model), "BENCH_WORKERS": str(args.workers),
           "BENTOML_DO_NOT_TRACK": "True", **settings}  # fmt: skip
    if name == "litserve-batched":
        return Process(name, [bin_dir / "python", BENCH / "litserve_service.py", str(port)], env,
                       BENCH)  # fmt: skip
    service = "IrisClassifierBatched" if name == "bentoml-batched" else "IrisClassifier"
    serve = f"serve bento_service:{service} --host 127.0.0.1".split()
    return Process(name, [bin_dir / "bentoml", *serve, "--port", str(port)], env, BENCH)


def http(url: str, body: str | None = None, timeout: float = 5) -> tuple[int, bytes]:
    data = body.encode() if body is not None else None
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def wait_ready(server, url: str, started: float) -> float:
    """Seconds from start until the readiness endpoint's first 200."""
    while time.monotonic() - started < READY_TIMEOUT_S:
        if not server.alive():
            raise RuntimeError("the server exited before it was ready")
        try:
            if http(url, timeout=2)[0] == 200:
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"not ready after {READY_TIMEOUT_S} s")


@contextmanager
def serving(bench: Bench, name: str, settings: dict[str, str], port: int | None = None):
    """Start one server on `port` (--port by default; a peer's gRPC and metrics take the
    next two), wait until it is ready and answers right; stop it afterwards.

    Yields the server and its seconds to ready.
    """
    port = port or bench.args.port
    spec, base = bench.spec(name), f"http://127.0.0.1:{port}"
    try:
        http(base + "/", timeout=1)
        raise RuntimeError(f"something already answers on 127.0.0.1:{port}")
    except OSError:
        pass  # nothing listens: the port is free
    log(f"{name}: starting on port {port} with {bench.args.workers} worker(s) {short(settings)}")
    started = time.monotonic()
    server = start(bench, name, settings, port)
    try:
        ready_s = wait_ready(server, base + spec.ready_path, started)
        status, answer = http(base + spec.predict_path, spec.body(bench.check_rows))
        got = spec.predictions(json.loads(answer)) if status == 200 else None
        if got != bench.expected:
            raise RuntimeError(f"predicted {status} {answer[:200]!r}, expected {bench.expected}")
        log(f"{name}: ready after {ready_s:.2f} s, predictions match")
        yield server, ready_s
    finally:
        server.stop()
