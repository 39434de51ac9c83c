"""The BentoML anchor: the same joblib artifact behind a predict API taking the same JSON.

`bentoml serve bento_service:IrisClassifier` with BENCH_MODEL (path to model.joblib) and
BENCH_WORKERS set by run.py. Out-of-the-box settings otherwise: a sync API (BentoML runs it
in its thread pool), no adaptive batching.
"""

import os

import bentoml
import joblib
import numpy as np


@bentoml.service(workers=int(os.environ.get("BENCH_WORKERS", "1")))
class IrisClassifier:
    def __init__(self) -> None:
        self.model = joblib.load(os.environ["BENCH_MODEL"])

    @bentoml.api(route="/predict")
    def predict(self, instances: list[list[float]]) -> dict:
        rows = np.asarray(instances, dtype=np.float64)
        return {"predictions": self.model.predict(rows).tolist()}
