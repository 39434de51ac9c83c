"""The LitServe anchor, batched: the same joblib artifact behind the same JSON API.

    python litserve_service.py PORT

run.py sets BENCH_MODEL (path to model.joblib), BENCH_WORKERS (inference workers, and as
many API server processes), BENCH_MAX_BATCH_SIZE and BENCH_BATCH_TIMEOUT_S (LitServe's two
batching knobs) and BENCH_FAST_QUEUE (its ZeroMQ queue between API servers and workers).
Defaults otherwise. LitServe's own readiness endpoint is /health.
"""

import os
import sys

import joblib
import litserve as ls
import numpy as np


class IrisAPI(ls.LitAPI):
    def setup(self, device) -> None:
        self.model = joblib.load(os.environ["BENCH_MODEL"])

    def decode_request(self, request: dict) -> np.ndarray:
        return np.asarray(request["instances"], dtype=np.float64)

    # Requests may carry several rows, so a batch is the list of their arrays: one model
    # call on all rows, then each request gets back its own slice.
    def batch(self, inputs: list) -> list:
        return inputs

    def predict(self, inputs: list) -> list:
        predictions = self.model.predict(np.concatenate(inputs)).tolist()
        slices, start = [], 0
        for rows in inputs:
            slices.append(predictions[start : start + len(rows)])
            start += len(rows)
        return slices

    def unbatch(self, output: list) -> list:
        return output

    def encode_response(self, output: list) -> dict:
        return {"predictions": output}


if __name__ == "__main__":
    workers = int(os.environ.get("BENCH_WORKERS", "1"))
    api = IrisAPI(
        max_batch_size=int(os.environ.get("BENCH_MAX_BATCH_SIZE", "64")),
        batch_timeout=float(os.environ.get("BENCH_BATCH_TIMEOUT_S", "0.005")),
    )
    server = ls.LitServer(
        api,
        accelerator="cpu",
        workers_per_device=workers,
        fast_queue=os.environ.get("BENCH_FAST_QUEUE") == "1",
    )
    server.run(
        host="127.0.0.1",
        port=int(sys.argv[1]),
        num_api_servers=workers,
        generate_client_file=False,
    )
