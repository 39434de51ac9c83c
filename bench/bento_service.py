"""The BentoML anchors: the same joblib artifact behind a predict API taking the same JSON.

`bentoml serve bento_service:IrisClassifier` (as shipped: a sync API that BentoML runs in its
thread pool, no batching) or `bento_service:IrisClassifierBatched` (adaptive batching on,
`batchable=True`: BentoML's dispatcher gathers concurrent requests into one model call).
run.py sets BENCH_MODEL (path to model.joblib), BENCH_WORKERS, and for the batched service
BENCH_MAX_BATCH_SIZE and BENCH_MAX_LATENCY_MS, the two knobs BentoML documents for it.
"""

import os

import bentoml
import joblib
import numpy as np

WORKERS = int(os.environ.get("BENCH_WORKERS", "1"))


@bentoml.service(workers=WORKERS)
class IrisClassifier:
    def __init__(self) -> None:
        self.model = joblib.load(os.environ["BENCH_MODEL"])

    @bentoml.api(route="/predict")
    def predict(self, instances: list[list[float]]) -> dict:
        rows = np.asarray(instances, dtype=np.float64)
        return {"predictions": self.model.predict(rows).tolist()}


@bentoml.service(workers=WORKERS)
class IrisClassifierBatched:
    def __init__(self) -> None:
        self.model = joblib.load(os.environ["BENCH_MODEL"])

    # A batchable API takes and returns arrays whose first axis is the batch: the answer to
    # {"instances": [[...]]} is the bare JSON list of predictions.
    @bentoml.api(
        route="/predict",
        batchable=True,
        max_batch_size=int(os.environ.get("BENCH_MAX_BATCH_SIZE", "100")),
        max_latency_ms=int(os.environ.get("BENCH_MAX_LATENCY_MS", "60000")),
    )
    def predict(self, instances: np.ndarray) -> np.ndarray:
        return self.model.predict(instances.astype(np.float64, copy=False))
