"""Stage 4, registry mode when things go wrong: a wrong digest, a registry down or cutting a
download short, a misconfiguration, a tampered cache. Each leaves the service unready
with a message that says what, or recovers by itself where the fault is passing.
"""

import hashlib
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

import reference
from combinations import Combination, choices
from containers import serving
from docker_host import sh
from published import (
    CACHE,
    Published,
    Publisher,
    fetching,
    https_access,
    says_only_where_to_look,
    short_id,
)
from servers.cutting_proxy import CuttingProxy
from servers.fixtures import HTTPS_TOKEN
from servers.https import HttpsServer
from servers.process import free_port

pytestmark = pytest.mark.docker


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
        FETCH_TIMEOUT_S="60", MODEL_URI=uri, MODEL_SHA256=reference.digest(model_dir),
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
class Blip:
    """The first download of `artifact` drops mid-body; the retry's warning names `says`."""

    combination: Combination
    artifact: str
    says: str | None  # None: the client retries a short body itself, within one attempt


BLIPS = [
    Blip(fetching("fastapi", "s3"), "model.joblib", None),  # boto3's transfer manager retries
    Blip(fetching("flask", "gcs"), "model.joblib", "broke off (ChunkedEncodingError"),
    Blip(fetching("fastapi", "mlflow"), "model.pkl", "a download from the MLflow server"),
    Blip(fetching("fastapi", "https"), "model.tar.gz", "dropped after"),
    Blip(fetching("flask", "https"), "model.joblib", "dropped after"),
]


@contextmanager
def cutting_once(blip: Blip, model_dir: Path, request, tmp_path) -> Iterator[Published]:
    """The sample model on a server that drops its first download of the artifact mid-body:
    through a proxy in front of the session's server, or (HTTPS, whose bytes a proxy cannot
    read) a server of its own that drops it itself."""
    c = blip.combination
    if c.model_registry == "https":
        with HttpsServer(tmp_path, HTTPS_TOKEN, cut=blip.artifact) as server:
            yield Publisher.https(server, model_dir, c.web_framework)
        return
    server = request.getfixturevalue(f"{c.model_registry}_server")
    model = request.getfixturevalue("published")(c, model_dir)
    with CuttingProxy(server.port, blip.artifact) as proxy:
        if c.model_registry == "gcs":  # the emulator links media to the host of the upload
            uri = server.publish(model_dir, "models", f"cut/{c.web_framework}", via=proxy.url)
            yield replace(model, uri=uri, env={"STORAGE_EMULATOR_HOST": proxy.url})
        else:
            endpoint = {"s3": "AWS_ENDPOINT_URL_S3", "mlflow": "MLFLOW_TRACKING_URI"}
            yield replace(model, env={**model.env, endpoint[c.model_registry]: proxy.url})
        assert (proxy.cuts, proxy.fetches) == (1, 2), "cut once, then fetched whole"


@pytest.mark.parametrize(
    ("combination", "blip"), [(blip.combination, blip) for blip in BLIPS],
    ids=[f"{short_id(blip.combination)}-{blip.artifact}" for blip in BLIPS],
)  # fmt: skip
def test_a_download_cut_mid_body_is_fetched_again(
    combination, blip, builds, render, request, tmp_path
):
    c = combination
    model_dir = render(c) / "model"
    rows = reference.probe_rows(20)
    expected = {"predictions": reference.predict(model_dir, rows)}
    with cutting_once(blip, model_dir, request, tmp_path) as model:
        with serving(
            builds.image(c), host_network=True, mounts=(CACHE, *model.mounts), **model.settings()
        ) as service:
            assert service.predict(rows).json() == expected
            lines = service.log_lines()
    assert not [line for line in lines if line["level"] in ("error", "critical")], lines
    retried = [line["message"] for line in lines if "retrying in" in line["message"]]
    if blip.says is None:
        assert not retried, retried
    else:
        assert len(retried) == 1 and blip.says in retried[0], lines


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

        # The cached metadata.json edited (still valid JSON, the artifact untouched): the
        # whole directory is verified on load, so it is refused and fetched again.
        metadata = "glob.glob('/var/cache/model/*/metadata.json')[0]"
        tamper = f"import glob; open({metadata}, 'a').write(' ')"
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
