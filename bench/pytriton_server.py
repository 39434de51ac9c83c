"""The Triton peer: the same joblib artifact behind NVIDIA Triton Inference Server (bundled by
PyTriton, Python backend), with Triton's dynamic batcher, speaking the Open Inference Protocol.

    python pytriton_server.py PORT

run.py sets BENCH_MODEL (path to model.joblib), BENCH_WORKERS (model instances: callables
in this one Python process), BENCH_MAX_BATCH_SIZE (PyTriton's default is 4) and
BENCH_MAX_QUEUE_DELAY_US (how long the dynamic batcher may hold a request for a fuller
batch). gRPC and metrics listen on PORT+1 and PORT+2. SIGTERM stops Triton cleanly.
"""

import os
import signal
import sys

import joblib
import numpy as np
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

MODEL_NAME = "iris-random-forest"


def stop(signum, frame) -> None:
    raise SystemExit(0)  # out of serve(): leaving the `with` block stops Triton


def main() -> None:
    port = int(sys.argv[1])
    model = joblib.load(os.environ["BENCH_MODEL"])

    @batch
    def infer(features: np.ndarray) -> dict[str, np.ndarray]:
        return {"class": model.predict(features).astype(np.int64).reshape(-1, 1)}

    config = TritonConfig(
        http_address="127.0.0.1", http_port=port,
        grpc_address="127.0.0.1", grpc_port=port + 1,
        metrics_address="127.0.0.1", metrics_port=port + 2,
        log_verbose=0,
    )  # fmt: skip
    batching = ModelConfig(
        max_batch_size=int(os.environ.get("BENCH_MAX_BATCH_SIZE", "4")),
        batcher=DynamicBatcher(
            max_queue_delay_microseconds=int(os.environ.get("BENCH_MAX_QUEUE_DELAY_US", "0"))
        ),
    )
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with Triton(config=config) as triton:
        triton.bind(
            model_name=MODEL_NAME,
            infer_func=[infer] * int(os.environ.get("BENCH_WORKERS", "1")),
            inputs=[Tensor(name="features", dtype=np.float32, shape=(4,))],
            outputs=[Tensor(name="class", dtype=np.int64, shape=(1,))],
            config=batching,
            strict=True,
        )
        triton.serve()


if __name__ == "__main__":
    main()
