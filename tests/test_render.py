"""Stage 1: every combination renders, every file is sound, lints clean and says what was asked."""

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import kserve_models
import reference
from checks import BIN, check_file, hadolint, renovate_config, ruff, workflows
from combinations import (
    ALL,
    DEFAULT_PYTHON,
    PER_ML_BUILD,
    TEMPLATE_ROOT,
    Combination,
    choices,
)

ML_REQUIREMENT = {
    ("sklearn", False): "scikit-learn==",
    ("onnxruntime", False): "onnxruntime==",
    ("onnxruntime", True): "onnxruntime-gpu[cuda,cudnn]==",
    ("pytorch", False): "torch==2.13.0+cpu",
    ("pytorch", True): "torch==2.13.0\n",
    ("xgboost", False): "\nxgboost-cpu==",
    ("xgboost", True): "\nxgboost==",
    ("lightgbm", False): "lightgbm==",
}
REGISTRY_CLIENT = {"s3": "boto3==", "gcs": "google-cloud-storage==", "mlflow": "mlflow-skinny=="}


@pytest.mark.parametrize("combination", ALL, ids=lambda c: c.id)
def test_render(combination: Combination, render):
    project = render(combination)
    for path in sorted(project.rglob("*")):
        if path.is_file():
            check_file(path, project)
    assert hadolint(project) == ""
    assert ruff(project) == ""
    assert workflows(project) == ""
    assert renovate_config(project) == ""
    check_answers(combination, project)


def check_answers(c: Combination, project: Path) -> None:
    """The files carry the answers: the checks a reader of each file would make."""
    recorded = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert {k: recorded[k] for k in c.answers} == c.answers
    package = project / "src" / recorded["package_name"]

    dockerfile = (project / "Dockerfile").read_text()
    assert f"ARG PYTHON_IMAGE=python:{c.python_version}-slim\n" in dockerfile
    assert ("COPY model/ /opt/model/" in dockerfile) == (c.model_source == "embedded")
    cpu_torch = c.ml_framework == "pytorch" and not c.gpu
    assert ("TORCH_INDEX_URL" in dockerfile) == cpu_torch
    # PyTorch's CPU index, for uv and for Renovate's look-ups of torch.
    assert (project / "uv.toml").exists() == cpu_torch
    assert ("download.pytorch.org" in (project / ".github/renovate.json").read_text()) == cpu_torch

    ml = (project / "requirements/ml.txt").read_text()
    assert ML_REQUIREMENT[c.ml_framework, c.gpu] in ml
    serving = (project / "requirements/serving.txt").read_text()
    assert ("uvicorn-worker==" in serving) == (c.web_framework == "fastapi")
    assert ("flask==" in serving) == (c.web_framework == "flask")
    for registry, client in REGISTRY_CLIENT.items():
        assert (client in serving) == (c.model_registry == registry)
    app = (package / "app.py").read_text()
    assert {"fastapi": "FastAPI", "flask": "Flask"}[c.web_framework] in app
    assert (package / "download.py").exists() == (c.model_source == "registry")

    compose = yaml.safe_load((project / "compose.yaml").read_text())
    service = compose["services"].pop(recorded["project_slug"])
    assert ("deploy" in service) == c.gpu
    assert ("MODEL_URI" in service["environment"]) == (c.model_source == "registry")
    # Registry mode: a local registry to fetch from (and a job that publishes model/ to it).
    local = {"s3": {"s3", "publish-model"}, "gcs": {"gcs", "publish-model"},
             "mlflow": {"mlflow", "publish-model"}, "https": {"models"}}  # fmt: skip
    assert set(compose["services"]) == local.get(c.model_registry, set())

    if c.model_source == "registry":
        # The digest the service pins is the shipped sample's, in Compose and in the ConfigMap,
        # by the command the docs give for it.
        assert reference.DIGEST_COMMAND in (project / "docs/model-registry.md").read_text()
        digest = reference.digest(project / "model")
        assert service["environment"]["MODEL_SHA256"] == f"${{MODEL_SHA256:-{digest}}}"
        kustomization = (project / "k8s/base/kustomization.yaml").read_text()
        assert f"- MODEL_SHA256={digest}\n" in kustomization
        assert (package / "publish.py").exists() and (package / "upload.py").exists()

    workflow = yaml.safe_load((project / ".github/workflows/ci.yaml").read_text())
    steps = workflow["jobs"]["image"]["steps"]
    (meta,) = [s for s in steps if s.get("uses", "").startswith("docker/metadata-action@")]
    assert meta["with"]["images"] == "${{ env.IMAGE }}"
    image = workflow["jobs"]["image"]["env"]["IMAGE"]
    host = {"ghcr": "ghcr.io", "dockerhub": "docker.io"}.get(c.container_registry)
    assert image == f"{host or recorded['registry_host']}/{recorded['image_path']}"
    (build,) = [s for s in steps if s.get("uses", "").startswith("docker/build-push-action@")]
    assert ("linux/arm64" in build["with"]["platforms"]) == (not c.gpu)

    kustomization = yaml.safe_load((project / "k8s/base/kustomization.yaml").read_text())
    assert [i["name"] for i in kustomization["images"]] == [image]
    deployment = yaml.safe_load((project / "k8s/base/deployment.yaml").read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert ("nvidia.com/gpu" in container["resources"]["limits"]) == c.gpu
    # Workload identities mount their own tokens: the Kubernetes API token stays out.
    assert deployment["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def files_of(project: Path) -> dict[str, bytes]:
    return {str(p.relative_to(project)): p.read_bytes() for p in project.rglob("*") if p.is_file()}


# The suite renders through quick_renders() (tests/renders.py): it must not change a byte.
@pytest.mark.parametrize("combination", PER_ML_BUILD, ids=lambda c: c.id)
def test_the_suites_renders_are_what_copiers_command_line_makes(
    combination, render, template_dir, tmp_path
):
    data = [arg for k, v in combination.answers.items() for arg in ("--data", f"{k}={v}")]
    command = [BIN / "copier", "copy", "--defaults", "--quiet", *data, template_dir, tmp_path]
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    assert files_of(tmp_path) == files_of(render(combination))


# Rendered for the suite's own Python where the questionnaire offers it: its pins (XGBoost's
# differ on 3.11) are then the ones installed here.
HOST_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
TRAINING_PYTHON = HOST_PYTHON if HOST_PYTHON in choices("python_version") else DEFAULT_PYTHON
TRAINED = [
    Combination(TRAINING_PYTHON, "fastapi", ml, False, "embedded", None, "ghcr")
    for ml in choices("ml_framework")
]


@pytest.mark.parametrize("combination", TRAINED, ids=lambda c: c.ml_framework)
def test_training_script_rebuilds_the_shipped_sample(combination: Combination, render, tmp_path):
    """model/ holds what scripts/train_sample_model.py makes with the pinned libraries."""
    project = render(combination)
    pins = (project / "requirements/ml.txt").read_text().splitlines()
    if (project / "requirements/train.txt").exists():
        pins += (project / "requirements/train.txt").read_text().splitlines()
    for name, version in (pin.split("==") for pin in pins if "==" in pin):
        assert importlib.metadata.version(name) == version, f"the host's {name} is not the pin"

    script = project / "scripts/train_sample_model.py"
    subprocess.run([sys.executable, script, tmp_path], check=True, timeout=300)
    shipped = project / "model"
    assert (tmp_path / "metadata.json").read_text() == (shipped / "metadata.json").read_text()
    rows = reference.probe_rows(200)
    assert reference.predict(tmp_path, rows) == reference.predict(shipped, rows)


# The manifests change with the ML build (resources, a GPU), the model source and the
# registry (the model cache, variables, secrets); the container registry names the image
# only, and the web framework and Python change nothing in them.
MANIFESTS = [
    c
    for c in ALL
    if (c.python_version, c.web_framework, c.container_registry)
    == (DEFAULT_PYTHON, "fastapi", "ghcr")
]
# The oldest release the manifests support (the generated docs/deploy.md says why) and the newest.
KUBERNETES = ("1.30.0", "1.37.0")


@pytest.fixture(scope="module")
def manifests(render, tmp_path_factory) -> dict[str, list]:
    """kustomize's build of each overlay of each distinct set: Kubernetes' own kinds (files
    for kubernetes-validate), and KServe's InferenceServices."""
    into = tmp_path_factory.mktemp("manifests")
    built: dict = {"kubernetes": [], "kserve": [], "deployed": {}}
    for c in MANIFESTS:
        for kustomization in ("base", "overlays/production", "overlays/kserve"):
            path = render(c) / "k8s" / kustomization
            done = subprocess.run(
                [BIN / "kubectl", "kustomize", path], capture_output=True, text=True
            )
            assert done.returncode == 0, f"{c.id} k8s/{kustomization}: {done.stderr}"
            documents = list(yaml.safe_load_all(done.stdout))
            ours = [d for d in documents if not d["apiVersion"].startswith("serving.kserve.io/")]
            built["kserve"] += [(c, d) for d in documents if d not in ours]
            if kustomization == "base":
                (deployment,) = [d for d in documents if d["kind"] == "Deployment"]
                built["deployed"][c] = deployment["spec"]["template"]["spec"]["containers"][0]
            built["kubernetes"].append(into / f"{c.id}-{kustomization.replace('/', '-')}.yaml")
            built["kubernetes"][-1].write_text(yaml.safe_dump_all(ours))
    return built


@pytest.mark.parametrize("version", KUBERNETES)
def test_the_manifests_are_valid_for_the_oldest_and_newest_kubernetes(manifests, version):
    files = manifests["kubernetes"]
    command = [BIN / "kubernetes-validate", "--strict", "--quiet", "-k", version, *files]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_kserve_overlay_is_an_inference_service_as_kserves_sdk_models_it(manifests):
    services = manifests["kserve"]
    assert len(services) == len(MANIFESTS)  # one per set, where KServe's storage initializer
    for c, service in services:  # fetches the model, the service's cache is gone
        assert kserve_models.problems(service) == [], c.id
        predictor = service["spec"]["predictor"]
        (container,) = predictor["containers"]
        assert container["name"] == "kserve-container"
        # The base's port, probes, limits and hardening.
        same = ("ports", "startupProbe", "readinessProbe", "livenessProbe", "resources")
        for key in (*same, "securityContext", "lifecycle", "image", "envFrom"):
            assert container[key] == manifests["deployed"][c][key], (c.id, key)
        env = {item["name"]: item.get("value") for item in container["env"]}
        assert env["PROTOCOL"] == "v2"
        mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
        if c.model_source == "registry" and c.model_registry != "mlflow":
            assert (env["MODEL_DIR"], env["MODEL_URI"]) == ("/mnt/models", "")
            assert "/var/cache/model" not in mounts and env["STORAGE_URI"]
        assert predictor["securityContext"]["runAsNonRoot"] is True


def test_the_docs_and_questionnaire_name_the_oldest_kubernetes_checked(render):
    oldest = KUBERNETES[0].removesuffix(".0")
    deploy = render(MANIFESTS[0]) / "docs/deploy.md"
    assert f"Kubernetes {oldest} or later" in deploy.read_text()
    questionnaire = yaml.safe_load((TEMPLATE_ROOT / "copier.yml").read_text())
    assert f"Kubernetes {oldest} or later" in questionnaire["project_slug"]["help"]
