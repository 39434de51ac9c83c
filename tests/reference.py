"""Predictions straight from a sample artifact, computed outside the image."""

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from sklearn.datasets import load_iris

IRIS = load_iris().data.tolist()


def probe_rows(random: int) -> list[list[float]]:
    """The 150 iris rows, then `random` rows drawn from [0, 8) with a fixed seed."""
    return IRIS + np.random.default_rng(0).uniform(0, 8, (random, 4)).tolist()


def predict(model_dir: Path, rows: list[list[float]]) -> list:
    metadata = json.loads((model_dir / "metadata.json").read_text())
    artifact = model_dir / metadata["artifact"]
    features = np.asarray(rows, dtype=input_dtype(metadata))
    if metadata["framework"] == "scikit-learn":
        import joblib

        return joblib.load(artifact).predict(features).tolist()
    if metadata["framework"] == "onnxruntime":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(artifact), providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: features})[0].tolist()
    if metadata["framework"] == "pytorch":
        import torch

        with torch.inference_mode():
            return torch.export.load(str(artifact)).module()(torch.from_numpy(features)).tolist()
    if metadata["framework"] == "xgboost":
        import xgboost

        classifier = xgboost.XGBClassifier()  # the sample is one, saved with its classes
        classifier.load_model(artifact)
        return classifier.predict(features).tolist()
    if metadata["framework"] == "lightgbm":
        import lightgbm

        probabilities = lightgbm.Booster(model_file=str(artifact)).predict(features)
        return probabilities.argmax(axis=1).tolist()  # the sample's multiclass objective
    raise ValueError(f"unknown framework {metadata['framework']!r}")


# The Open Inference Protocol's datatypes that models here take, as numpy's dtypes.
DTYPES = {"FP16": "float16", "FP32": "float32", "FP64": "float64", "INT64": "int64"}


def input_dtype(metadata: dict) -> str:
    """The input's dtype, as metadata.json declares it (or in its older input_schema form)."""
    if "inputs" in metadata:
        return DTYPES[metadata["inputs"][0]["datatype"]]
    return metadata["input_schema"]["dtype"]


# The command the generated docs/model-registry.md gives for a model directory's digest
# (MODEL_SHA256): the suite runs it as written, an implementation apart from the service's.
DIGEST_COMMAND = (
    "find . -type f -printf '%P\\n' | LC_ALL=C sort | xargs -rd '\\n' sha256sum | sha256sum"
)


def digest(model_dir: Path, only: tuple[str, ...] = ()) -> str:
    """The digest of `model_dir`, or of only the files named (what a fetch brings)."""
    with tempfile.TemporaryDirectory() as copy:
        if only:
            for name in only:
                shutil.copy(model_dir / name, Path(copy) / name)
            model_dir = Path(copy)
        result = subprocess.run(
            ["bash", "-c", DIGEST_COMMAND], cwd=model_dir, capture_output=True, text=True,
            check=True,
        )  # fmt: skip
    return result.stdout.split()[0]


def model_dir(estimator, sample: Path, into: Path) -> Path:
    """`into` as a model directory: `estimator` pickled beside the sample's metadata."""
    import joblib

    joblib.dump(estimator, into / "model.joblib")
    (into / "metadata.json").write_text((sample / "metadata.json").read_text())
    for path in (into, *into.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)  # readable by the image's user
    return into
