"""The sample model as each registry server holds it, for the registry-mode tests.

Each server is real and on 127.0.0.1 (tests/servers/); the images under test run on the
host network, with the model cache on a volume, as in Kubernetes.
"""

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import reference
from combinations import DEFAULT_PYTHON, TEMPLATE_ROOT, Combination, choices
from containers import read_only
from servers.fixtures import HTTPS_TOKEN
from servers.https import HttpsServer
from servers.s3 import CREDENTIALS

FETCHING = [
    Combination(DEFAULT_PYTHON, web, "sklearn", False, "registry", registry, "ghcr")
    for web in choices("web_framework")
    for registry in choices("model_registry")
]
# The boosters as MLflow logs them with its own flavours: what a booster changes in registry
# mode is how an MLmodel names its artifact; the registries' other forms are the same files.
FLAVORED_BOOSTERS = [
    Combination(DEFAULT_PYTHON, "fastapi", "xgboost", False, "registry", "mlflow", "ghcr"),
    Combination(DEFAULT_PYTHON, "flask", "lightgbm", False, "registry", "mlflow", "ghcr"),
]


def says_only_where_to_look(error: dict, *details: str) -> bool:
    """/readyz tells any caller that the model is not loaded, and that the log says why:
    none of the detail (a bucket, a server, a credential's variable) the log gives."""
    return "log" in error["message"] and not any(d in error["message"] for d in details)


def fetching(web_framework: str, registry: str) -> Combination:
    (combination,) = [
        c for c in FETCHING if (c.web_framework, c.model_registry) == (web_framework, registry)
    ]
    return combination


def short_id(c: Combination) -> str:
    ml = "" if c.ml_framework == "sklearn" else f"-{c.ml_framework}"
    return f"{c.web_framework}{ml}-{c.model_registry}"


# An anonymous volume, as an emptyDir: it starts with the image's /var/cache/model (UID 10001).
CACHE = "type=volume,dst=/var/cache/model"
SECRETS = "/run/secrets"
# Every credential the suite hands a container; none may end up in an image or a rendered file.
CREDENTIAL_STRINGS = [CREDENTIALS["AWS_SECRET_ACCESS_KEY"], HTTPS_TOKEN]


@dataclass(frozen=True)
class Published:
    """The sample model at `uri` on a running server, and what a container needs to fetch it."""

    uri: str
    sha256: str
    env: dict
    mounts: tuple[str, ...] = ()

    def settings(self, **overrides: str) -> dict:
        return {"MODEL_URI": self.uri, "MODEL_SHA256": self.sha256, **self.env, **overrides}


def https_access(server: HttpsServer) -> tuple[dict, tuple[str, ...]]:
    env = {"MODEL_CA_BUNDLE": f"{SECRETS}/ca.pem"}
    return env, (read_only(server.ca_file, f"{SECRETS}/ca.pem"),)


class Publisher:
    """Publishes a render's sample model once per registry and form, on first use.

    The forms differ per web framework so that together they cover each registry's
    layouts: S3 and GCS with the console's folder object; MLflow as a model logged with
    its scikit-learn flavour behind an alias, and as plain files under runs:/ID/PATH (a
    booster with its own flavour, behind an alias);
    HTTPS as a private tarball with a top-level folder (token from a mounted file) and
    as a private artifact file beside its metadata.json (token from the environment).
    """

    def __init__(self, request) -> None:
        self._request = request
        self._published: dict[tuple[str, str], Published] = {}

    def __call__(self, c: Combination, model_dir: Path) -> Published:
        key = (c.model_registry, c.web_framework, c.ml_framework)
        if key not in self._published:
            server = self._request.getfixturevalue(f"{c.model_registry}_server")
            if c.ml_framework == "sklearn":
                publish = getattr(self, c.model_registry)
                self._published[key] = publish(server, model_dir, c.web_framework)
            else:
                self._published[key] = self.flavored_booster(server, model_dir, c.ml_framework)
        return self._published[key]

    @staticmethod
    def object_store(server, model_dir: Path, web: str) -> Published:
        uri = server.publish(model_dir, "models", f"iris/{web}")
        return Published(uri, reference.digest(model_dir), server.client_env())

    s3 = gcs = object_store  # S3 and GCS publish the same way

    @staticmethod
    def mlflow(server, model_dir: Path, web: str) -> Published:
        if web == "fastapi":
            import joblib

            estimator = joblib.load(model_dir / "model.joblib")
            options = {"serialization_format": "cloudpickle"}
            example = np.asarray(reference.IRIS[:5])
            uri = server.log_flavored(
                "sklearn", estimator, example, "iris-flavored", "champion", **options
            )
            return as_served(server, model_dir, uri)
        uri, _ = server.log_directory(model_dir, "iris-files")
        return Published(uri, reference.digest(model_dir), server.client_env())

    @staticmethod
    def flavored_booster(server, model_dir: Path, framework: str) -> Published:
        """The sample booster as `mlflow.xgboost` or `mlflow.lightgbm` logs it."""
        metadata = json.loads((model_dir / "metadata.json").read_text())
        artifact = str(model_dir / metadata["artifact"])
        if framework == "xgboost":
            import xgboost

            model = xgboost.XGBClassifier()
            model.load_model(artifact)
        else:
            import lightgbm

            model = lightgbm.Booster(model_file=artifact)
        example = np.asarray(reference.IRIS[:5], dtype=np.float32)  # the sample's dtype
        uri = server.log_flavored(framework, model, example, f"iris-{framework}", "champion")
        return as_served(server, model_dir, uri)

    @staticmethod
    def https(server, model_dir: Path, web: str) -> Published:
        env, mounts = https_access(server)
        if web == "fastapi":
            uri = server.publish_archive(model_dir, "private/iris/model.tar.gz", "model")
            env = {**env, "MODEL_AUTH_TOKEN_FILE": f"{SECRETS}/model-token"}
            mounts = (*mounts, read_only(server.token_file, f"{SECRETS}/model-token"))
        else:
            server.publish_files(model_dir, "private/iris-files")
            uri = f"{server.url}/private/iris-files/model.joblib"
            env = {**env, "MODEL_AUTH_TOKEN": server.token}
            # This form fetches the artifact and its metadata.json only: the digest is theirs.
            digest = reference.digest(model_dir, only=("metadata.json", "model.joblib"))
            return Published(uri, digest, env, mounts)
        return Published(uri, reference.digest(model_dir), env, mounts)


def as_served(server, model_dir: Path, uri: str) -> Published:
    """What the registry holds at `uri`, read back through MLflow's own client, with the
    metadata.json the service writes from its MLmodel: the directory the service verifies."""
    from mlflow.artifacts import download_artifacts

    local = Path(download_artifacts(artifact_uri=uri, dst_path=tempfile.mkdtemp()))
    derive_metadata(model_dir.parent, local, uri)
    return Published(uri, reference.digest(local), server.client_env())


def derive_metadata(project: Path, model_dir: Path, uri: str) -> None:
    """Write the metadata.json a service writes for a model MLflow logged, by its own code."""
    (mlmodel,) = project.glob("src/*/mlmodel.py")
    code = f"import sys, pathlib, {mlmodel.parent.name}.mlmodel as m; " + (
        "m.write_metadata(pathlib.Path(sys.argv[1]), sys.argv[2])"
    )
    environment = {**os.environ, "PYTHONPATH": str(project / "src")}
    subprocess.run([sys.executable, "-c", code, model_dir, uri], env=environment, check=True)


@pytest.fixture(scope="session")
def published(request) -> Publisher:
    return Publisher(request)


@pytest.fixture(scope="session")
def time_to_ready():
    """Seconds from `docker run` to ready, per combination: build/test-report/registry.json."""
    seconds: dict[str, float] = {}
    yield seconds
    report = TEMPLATE_ROOT / "build" / "test-report" / "registry.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps({"seconds_from_docker_run_to_ready": seconds}, indent=2) + "\n")
