"""Predictions straight from a sample artifact, computed outside the image."""

import hashlib
import json
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
    features = np.asarray(rows, dtype=metadata["input_schema"]["dtype"])
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
    raise ValueError(f"unknown framework {metadata['framework']!r}")


def digest(model_dir: Path) -> str:
    """sha256 of the artifact metadata.json names: what MODEL_SHA256 pins."""
    metadata = json.loads((model_dir / "metadata.json").read_text())
    return hashlib.sha256((model_dir / metadata["artifact"]).read_bytes()).hexdigest()
