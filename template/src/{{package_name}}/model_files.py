"""The model directory: metadata.json, the artifact it names, and that artifact's digest."""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelFiles:
    directory: Path
    metadata: dict
    artifact: Path
    # sha256 of the artifact: what /metadata reports and MODEL_SHA256 pins.
    sha256: str


def read_model_dir(directory: Path) -> ModelFiles:
    metadata_file = directory / "metadata.json"
    if not metadata_file.is_file():
        raise FileNotFoundError(f"no {metadata_file}: is MODEL_DIR right?")
    metadata = json.loads(metadata_file.read_text())
    artifact = directory / metadata["artifact"]
    if not artifact.resolve().is_relative_to(directory.resolve()):
        raise ValueError(f"{metadata_file} names {metadata['artifact']!r}, outside {directory}")
    if not artifact.is_file():
        raise FileNotFoundError(f"{metadata_file} names {artifact.name!r}: not in {directory}")
    return ModelFiles(directory, metadata, artifact, sha256_of(artifact))


def sha256_of(path: Path) -> str:
    """Hash in fixed-size chunks: a multi-gigabyte model costs no extra memory."""
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()
