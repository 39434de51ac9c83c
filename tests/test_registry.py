"""Stage 4: registry mode for real. Built images fetch the sample model from real servers.

An S3 API (moto), a GCS emulator, an MLflow tracking server with its model registry
and a static HTTPS server with its own CA run on 127.0.0.1; each image runs
read-only on the host network, with the model cache on a volume, as in Kubernetes.
"""

import hashlib
import json
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

import reference
from combinations import DEFAULT_PYTHON, TEMPLATE_ROOT, Combination, choices
from containers import read_only, serving
from docker_host import sh
from servers.fixtures import HTTPS_TOKEN
from servers.https import HttpsServer
from servers.process import free_port
from servers.s3 import CREDENTIALS

pytestmark = pytest.mark.docker

FETCHING = [
    Combination(DEFAULT_PYTHON, web, "sklearn", False, "registry", registry, "ghcr")
    for web in choices("web_framework")
    for registry in choices("model_registry")
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
    return f"{c.web_framework}-{c.model_registry}"


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


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def https_access(server: HttpsServer) -> tuple[dict, tuple[str, ...]]:
    env = {"MODEL_CA_BUNDLE": f"{SECRETS}/ca.pem"}
    return env, (read_only(server.ca_file, f"{SECRETS}/ca.pem"),)


class Publisher:
    """Publishes a render's sample model once per registry and form, on first use.

    The forms differ per web framework so that together they cover each registry's
    layouts: S3 and GCS with the console's folder object; MLflow as a model logged with
    its scikit-learn flavour behind an alias, and as plain files under runs:/ID/PATH;
    HTTPS as a private tarball with a top-level folder (token from a mounted file) and
    as a private artifact file beside its metadata.json (token from the environment).
    """

    def __init__(self, request) -> None:
        self._request = request
        self._published: dict[tuple[str, str], Published] = {}

    def __call__(self, c: Combination, model_dir: Path) -> Published:
        key = (c.model_registry, c.web_framework)
        if key not in self._published:
            server = self._request.getfixturevalue(f"{c.model_registry}_server")
            publish = getattr(self, f"_{c.model_registry}")
            self._published[key] = publish(server, model_dir, c.web_framework)
        return self._published[key]

    @staticmethod
    def _object_store(server, model_dir: Path, web: str) -> Published:
        uri = server.publish(model_dir, "models", f"iris/{web}")
        return Published(uri, sha256(model_dir / "model.joblib"), server.client_env())

    _s3 = _gcs = _object_store  # S3 and GCS publish the same way

    @staticmethod
    def _mlflow(server, model_dir: Path, web: str) -> Published:
        if web == "fastapi":
            import joblib
            import numpy as np
            from mlflow.artifacts import download_artifacts

            estimator = joblib.load(model_dir / "model.joblib")
            example = np.asarray(reference.IRIS[:5])
            uri = server.log_flavored(estimator, example, "iris-flavored", "champion")
            # The digest of what the registry holds, read back through MLflow's own client.
            local = Path(download_artifacts(artifact_uri=uri, dst_path=tempfile.mkdtemp()))
            return Published(uri, sha256(local / "model.pkl"), server.client_env())
        uri, _ = server.log_directory(model_dir, "iris-files")
        return Published(uri, sha256(model_dir / "model.joblib"), server.client_env())

    @staticmethod
    def _https(server, model_dir: Path, web: str) -> Published:
        env, mounts = https_access(server)
        if web == "fastapi":
            uri = server.publish_archive(model_dir, "private/iris/model.tar.gz", "model")
            env = {**env, "MODEL_AUTH_TOKEN_FILE": f"{SECRETS}/model-token"}
            mounts = (*mounts, read_only(server.token_file, f"{SECRETS}/model-token"))
        else:
            server.publish_files(model_dir, "private/iris-files")
            uri = f"{server.url}/private/iris-files/model.joblib"
            env = {**env, "MODEL_AUTH_TOKEN": server.token}
        return Published(uri, sha256(model_dir / "model.joblib"), env, mounts)


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


@pytest.mark.parametrize("combination", FETCHING, ids=short_id)
def test_fetches_the_sample_and_answers_as_the_artifact_does(
    combination, builds, render, published, time_to_ready
):
    model_dir = render(combination) / "model"
    model = published(combination, model_dir)
    rows = reference.probe_rows(50)
    expected = reference.predict(model_dir, rows)
    image = builds.image(combination)
    started = time.monotonic()
    with serving(
        image, host_network=True, mounts=(CACHE, *model.mounts), **model.settings()
    ) as service:
        time_to_ready[combination.id] = round(time.monotonic() - started, 2)
        response = service.predict(rows)
        assert response.status_code == 200, response.text
        assert response.json() == {"predictions": expected}
        metadata = requests.get(f"{service.url}/metadata", timeout=10).json()
        assert metadata["sha256"] == model.sha256
        lines = service.log_lines()
    assert not [line for line in lines if line["level"] in ("error", "critical")], lines
    assert any("fetched the model" in line["message"] for line in lines), lines
    for secret in CREDENTIAL_STRINGS:
        assert secret not in json.dumps(lines), "a credential reached the logs"


@pytest.mark.parametrize(
    "combination", [fetching("fastapi", "s3"), fetching("flask", "gcs")], ids=short_id
)
def test_wrong_digest_is_never_ready_and_says_so_once(combination, builds, render, published):
    model = published(combination, render(combination) / "model")
    wrong = hashlib.sha256(b"some other model").hexdigest()
    with serving(
        builds.image(combination), host_network=True, mounts=(CACHE, *model.mounts), wait=False,
        **model.settings(MODEL_SHA256=wrong, WORKERS="2"),
    ) as service:  # fmt: skip
        error = service.wait_unready()
        assert says_only_where_to_look(error, wrong, model.sha256, "digest"), error
        time.sleep(2)
        assert service.readyz().status_code == 503
        lines = service.log_lines()
    said = [line for line in lines if "digest mismatch" in line["message"]]
    assert [line["level"] for line in said] == ["error"], said  # once, not once a worker
    assert wrong in said[0]["message"] and model.sha256 in said[0]["message"], said
    assert "exception" not in said[0], "the message, not a traceback"
    downloads = [line for line in lines if line["message"].startswith("fetching the model")]
    assert len(downloads) == 1, downloads


@pytest.mark.parametrize(
    "combination", [fetching(web, "https") for web in choices("web_framework")], ids=short_id
)
def test_registry_down_at_start_up_then_up_gets_ready(
    combination, builds, render, tmp_path, time_to_ready
):
    model_dir = render(combination) / "model"
    server = HttpsServer(tmp_path, HTTPS_TOKEN, free_port())
    uri = server.publish_archive(model_dir, "late/model.tar.gz", None)  # on disk, not served yet
    env, mounts = https_access(server)
    with serving(
        builds.image(combination), host_network=True, mounts=(CACHE, *mounts), wait=False,
        FETCH_TIMEOUT_S="60", MODEL_URI=uri, MODEL_SHA256=sha256(model_dir / "model.joblib"),
        **env,
    ) as service:  # fmt: skip
        time.sleep(4)  # a few attempts find nothing listening
        assert "still loading" in service.readyz().json()["error"]["message"]
        with server:
            seconds = service.wait_ready(60)
            assert service.predict(reference.IRIS[:3]).json() == {"predictions": [0, 0, 0]}
        lines = service.log_lines()
    time_to_ready[f"{combination.id} (registry up after 4 s)"] = round(4 + seconds, 2)
    retries = [line for line in lines if "retrying in" in line["message"]]
    assert retries and all(line["level"] == "warning" for line in retries), lines


@dataclass(frozen=True)
class Misconfigured:
    what: str
    registry: str
    says: str
    settings: object  # (Published) -> environment overrides


MISCONFIGURED = [
    Misconfigured("missing object", "s3", "nothing under s3://models/absent",
                  lambda p: {"MODEL_URI": "s3://models/absent"}),
    Misconfigured("no such bucket", "s3", "no such bucket",
                  lambda p: {"MODEL_URI": "s3://no-such-bucket/iris"}),
    Misconfigured("no credentials", "s3", "no AWS credentials",
                  lambda p: {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "",
                             "AWS_EC2_METADATA_DISABLED": "true"}),
    Misconfigured("bad URI", "s3", "MODEL_URI must look like s3://bucket/prefix",
                  lambda p: {"MODEL_URI": "https://example.com/model"}),
    Misconfigured("missing object", "gcs", "nothing under gs://models/absent",
                  lambda p: {"MODEL_URI": "gs://models/absent"}),
    Misconfigured("no such model", "mlflow", "no such model",
                  lambda p: {"MODEL_URI": "models:/absent@champion"}),
    Misconfigured("missing object", "https", "no such object",
                  lambda p: {"MODEL_URI": p.uri.replace("/private/", "/absent/")}),
    Misconfigured("no credentials", "https", "wants a credential",
                  lambda p: {"MODEL_AUTH_TOKEN_FILE": ""}),
    Misconfigured("untrusted certificate", "https", "set MODEL_CA_BUNDLE",
                  lambda p: {"MODEL_CA_BUNDLE": ""}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("combination", "case"),
    [(fetching("fastapi", case.registry), case) for case in MISCONFIGURED],
    ids=[f"{case.registry}-{case.what.replace(' ', '-')}" for case in MISCONFIGURED],
)
def test_misconfiguration_leaves_it_unready_with_a_message_that_says_what(
    combination, case, builds, render, published
):
    model = published(combination, render(combination) / "model")
    settings = model.settings(**case.settings(model))
    settings = {key: value for key, value in settings.items() if value}  # "" unsets
    with serving(
        builds.image(combination), host_network=True, mounts=(CACHE, *model.mounts), wait=False,
        FETCH_TIMEOUT_S="5", **settings,
    ) as service:  # fmt: skip
        error = service.wait_unready()
        lines = service.log_lines()
    # The log says exactly what is wrong; any caller of /readyz only that it is.
    said = [line["message"] for line in lines if line["level"] == "error"]
    assert [message for message in said if case.says in message], lines
    assert says_only_where_to_look(error, case.says, "://", "127.0.0.1"), error


@pytest.mark.parametrize("combination", [fetching("fastapi", "s3")], ids=short_id)
def test_a_missing_digest_stops_start_up_naming_the_variable(
    combination, builds, render, published
):
    model = published(combination, render(combination) / "model")
    environment = {key: value for key, value in model.settings().items() if key != "MODEL_SHA256"}
    result = subprocess.run(
        ["docker", "run", "--rm", "--network", "host", "--env", f"PORT={free_port()}",
         *[f"--env={key}={value}" for key, value in environment.items()],
         builds.image(combination)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "MODEL_SHA256" in result.stderr and "ALLOW_UNVERIFIED_MODEL" in result.stderr


@pytest.mark.parametrize("combination", [fetching("fastapi", "s3")], ids=short_id)
def test_restart_with_the_cache_kept_verifies_it_and_does_not_download(
    combination, builds, render, published
):
    image = builds.image(combination)
    model = published(combination, render(combination) / "model")
    volume = sh("docker", "volume", "create").strip()
    cache = f"type=volume,src={volume},dst=/var/cache/model"
    # Later runs cannot reach the store: whatever they serve comes from the cache.
    unreachable = model.settings(AWS_ENDPOINT_URL_S3=f"http://127.0.0.1:{free_port()}")
    try:
        with serving(image, host_network=True, mounts=(cache,), **model.settings()):
            pass
        with serving(image, host_network=True, mounts=(cache,), **unreachable) as service:
            lines = service.log_lines()
        assert any("found in the cache" in line["message"] for line in lines), lines
        assert not any("fetching the model" in line["message"] for line in lines), lines

        # Another artifact in the cache, same name: verified on load, refused, fetched again.
        artifact = "glob.glob('/var/cache/model/*/model.joblib')[0]"
        tamper = f"import glob; open({artifact}, 'ab').write(b'!')"
        sh("docker", "run", "--rm", "--user", "10001", "--mount", cache, "--entrypoint",
           "python", image, "-c", tamper)  # fmt: skip
        with serving(
            image, host_network=True, mounts=(cache,), wait=False, FETCH_TIMEOUT_S="3",
            **unreachable,
        ) as service:  # fmt: skip
            error = service.wait_unready()
            lines = service.log_lines()
        assert says_only_where_to_look(error, "S3", "127.0.0.1"), error
        assert any("cannot reach S3" in line["message"] for line in lines), lines
        refused = [line for line in lines if "digest mismatch" in line["message"]]
        assert refused and "fetching it again" in refused[0]["message"], lines
    finally:
        sh("docker", "volume", "rm", "--force", volume, check=False)


@pytest.mark.parametrize("combination", FETCHING, ids=short_id)
def test_no_credential_in_the_image_its_history_or_the_rendered_files(combination, builds, render):
    image = builds.image(combination)
    history = sh("docker", "history", "--no-trunc", image)
    config = sh("docker", "image", "inspect", image)
    project = render(combination)
    rendered = "".join(
        path.read_text(errors="replace")
        for pattern in ("compose.yaml", "k8s/**/*.yaml", "Dockerfile", ".env*")
        for path in project.glob(pattern)
    )
    for secret in CREDENTIAL_STRINGS:
        assert secret not in history + config + rendered, secret
    assert not image_holds(image, [secret.encode() for secret in CREDENTIAL_STRINGS])


def image_holds(image: str, needles: list[bytes]) -> list[bytes]:
    """The needles found anywhere in `docker save` of the image (every layer, every file)."""
    found, tail = set(), b""
    overlap = max(map(len, needles))
    with subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE) as save:
        while chunk := save.stdout.read(1 << 22):
            window = tail + chunk
            found.update(needle for needle in needles if needle in window)
            tail = window[-overlap:]
    assert save.returncode == 0
    return sorted(found)


# Every registry's local stand-in, each web framework twice.
COMPOSED = [
    fetching("fastapi", "s3"),
    fetching("flask", "gcs"),
    fetching("fastapi", "mlflow"),
    fetching("flask", "https"),
]


@pytest.mark.in_image("compose")
@pytest.mark.parametrize("combination", COMPOSED, ids=short_id)
def test_compose_up_serves_the_sample_from_the_local_registry(combination, builds, say):
    """What the copy message tells every user to run, in registry mode (run on the Docker
    side, behind the builds: tests/compose_check.py)."""
    failure, answer, notes = builds.compose(combination)
    for line in notes:
        say(f"docker: {line}")
    assert not failure, failure
    assert answer == {"predictions": [0, 1, 2]}
