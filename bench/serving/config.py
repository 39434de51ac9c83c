"""Where the benchmark keeps its files, the bodies it sends, and the servers it knows."""

import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"
WORK = BENCH / ".work"
# One venv per peer whose pins clash with the others': MLServer needs uvloop below 0.22
# (newer ones crash its parallel workers), PyTriton numpy below 2.
VENVS = {
    "anchors": BENCH / ".venv",
    "mlserver": BENCH / ".venv-mlserver",
    "pytriton": BENCH / ".venv-pytriton",
}
REQUIREMENTS = {
    "anchors": BENCH / "requirements.txt",
    "mlserver": BENCH / "requirements-mlserver.txt",
    "pytriton": BENCH / "requirements-pytriton.txt",
}
VPY = VENVS["anchors"] / "bin" / "python"

# The protocol's paths name the model: every server names it as the generated service's
# metadata.json does (servers.Bench.spec fills it in).
INFER_PATH = "/v2/models/{model}/infer"
ROW = [5.1, 3.5, 1.4, 0.2]
OVERLOAD_ROWS = [
    [5.1, 3.5, 1.4, 0.2], [4.9, 3.0, 1.4, 0.2], [6.2, 3.4, 5.4, 2.3], [5.9, 3.0, 5.1, 1.8],
    [6.4, 3.2, 4.5, 1.5], [5.5, 2.3, 4.0, 1.3], [4.7, 3.2, 1.3, 0.2], [6.9, 3.1, 4.9, 1.5],
]  # fmt: skip


def instances(rows: list) -> str:
    """A /predict body (the generated services, MLflow, BentoML, LitServe)."""
    return json.dumps({"instances": rows})


def infer_request(rows: list) -> str:
    """An Open Inference Protocol infer body: the rows as one FP32 input."""
    tensor = {"name": "features", "datatype": "FP32", "shape": [len(rows), len(rows[0])]}
    return json.dumps({"inputs": [{**tensor, "data": rows}]})


GENERATED = ("fastapi", "fastapi-oip", "flask", "flask-oip")  # the images, on both endpoints


def server_of(name: str) -> str:
    """The server a run loads: a generated image's infer run is its /predict container's."""
    return name.removesuffix("-oip")


AS_SHIPPED = ("mlflow", "bentoml")  # the anchors with their defaults
AT_BEST = ("bentoml-batched", "litserve-batched")  # the anchors batching, at their best settings
OIP_PEERS = ("mlserver", "pytriton")  # the servers that speak the protocol, at their best
ALL_SERVERS = [*GENERATED, *AS_SHIPPED, *AT_BEST, *OIP_PEERS]
# The sample each ML framework's render ships (--ml), and the peers serving each natively:
# the boosters against MLServer's own runtimes for them (mlserver-xgboost, mlserver-lightgbm).
ML_FRAMEWORKS = ("sklearn", "xgboost", "lightgbm")
SERVERS_FOR = {"sklearn": ALL_SERVERS, "xgboost": [*GENERATED, "mlserver"],
               "lightgbm": [*GENERATED, "mlserver"]}  # fmt: skip
OVERLOAD_RSS_MIB = 64  # per worker: how far a generated service's RSS may grow under overload
READY_TIMEOUT_S = 180
STOP_TIMEOUT_S = 20


def log(message: str) -> None:
    print(f"bench {time.strftime('%H:%M:%S')}: {message}", file=sys.stderr, flush=True)


def sh(*command, log_to: Path | None = None, **kwargs) -> subprocess.CompletedProcess:
    """Run a command to completion; its output goes to `log_to` (or is captured)."""
    if log_to:
        with log_to.open("w") as out:
            done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, **kwargs)
        if done.returncode:
            tail = log_to.read_text()[-3000:]
            raise RuntimeError(f"{' '.join(map(str, command))} failed ({log_to}):\n{tail}")
        return done
    return subprocess.run(command, check=True, capture_output=True, text=True, **kwargs)
