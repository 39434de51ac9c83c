"""The model directory: metadata.json, the artifact it names, and the directory's digest."""

import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelFiles:
    directory: Path
    metadata: dict
    artifact: Path
    # The directory's digest (tree_sha256): what /metadata reports and MODEL_SHA256 pins.
    sha256: str
    # The files it covers, relative to `directory`: named when it does not match.
    covered: tuple[str, ...]


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
    manifest = manifest_of(directory)
    return ModelFiles(directory, metadata, artifact, digest_of(manifest), tuple(manifest))


def digest_of(manifest: dict[str, str]) -> str:
    lines = "".join(f"{sha256}  {path}\n" for path, sha256 in manifest.items())
    return hashlib.sha256(lines.encode()).hexdigest()


def manifest_of(directory: Path) -> dict[str, str]:
    """The sha256 of every regular file under `directory`, by relative path, sorted.

    The directory's digest is the sha256 of these as `sha256sum` prints them, so that
    metadata.json (it sets the input's dtype and shape), external weights and anything
    else beside the artifact are verified with it. In the model directory, the shell's
        find . -type f -printf '%P\\n' | LC_ALL=C sort | xargs -rd '\\n' sha256sum | sha256sum
    computes the same.
    """
    files = []
    for folder, subfolders, names in os.walk(directory):  # never into linked folders
        subfolders.sort()
        for name in names:
            path = Path(folder, name)
            if stat.S_ISREG(path.lstat().st_mode):  # as find -type f: links are not followed
                files.append(path.relative_to(directory).as_posix())
    files.sort(key=os.fsencode)  # byte order, as LC_ALL=C sort
    return {name: sha256_of(directory / name) for name in files}


def sha256_of(path: Path) -> str:
    """Hash in fixed-size chunks: a multi-gigabyte model costs no extra memory."""
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()
