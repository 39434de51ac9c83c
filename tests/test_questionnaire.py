"""The questionnaire through Copier's own command line, as a user runs it (no --trust)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from combinations import TEMPLATE_ROOT

COPIER = Path(sys.executable).parent / "copier"


def copier_copy(template: Path, destination: Path, *data: str) -> subprocess.CompletedProcess:
    arguments = [arg for answer in data for arg in ("--data", answer)]
    return subprocess.run(
        [COPIER, "copy", "--defaults", *arguments, str(template), str(destination)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


def test_defaults_render_without_trust(template_dir, tmp_path):
    result = copier_copy(template_dir, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    answers = yaml.safe_load((tmp_path / "out/.copier-answers.yml").read_text())
    assert answers["web_framework"] == "fastapi"
    assert answers["ml_framework"] == "sklearn"
    assert answers["model_source"] == "embedded"


def test_every_answer_given_by_data(template_dir, tmp_path):
    given = {
        "project_name": "Fraud Scorer",
        "project_slug": "fraud-scorer",
        "package_name": "fraud_scorer",
        "description": "Scores card payments.",
        "author_name": "Risk ML",
        "author_email": "risk-ml@example.org",
        "python_version": "3.11",
        "web_framework": "flask",
        "gpu": "true",
        "ml_framework": "pytorch",
        "model_source": "registry",
        "model_registry": "gcs",
        "container_registry": "gar",
        "registry_host": "europe-west4-docker.pkg.dev",
        "image_path": "risk-prod/models/fraud-scorer",
    }
    result = copier_copy(template_dir, tmp_path / "out", *(f"{k}={v}" for k, v in given.items()))
    assert result.returncode == 0, result.stderr
    answers = yaml.safe_load((tmp_path / "out/.copier-answers.yml").read_text())
    assert {k: str(answers[k]).lower() if k == "gpu" else answers[k] for k in given} == given
    assert (tmp_path / "out/src/fraud_scorer/download.py").is_file()


REFUSALS = [
    pytest.param(["package_name=1fraud"], "'1fraud' is not a valid package name", id="package"),
    pytest.param(["package_name=json"], "shadows a module", id="package-shadows"),
    pytest.param(["project_slug=Fraud_Scorer"], "lowercase letters, digits and '-'", id="slug"),
    pytest.param(["author_email=nobody"], "'nobody' is not an e-mail address", id="email"),
    pytest.param(
        ["gpu=true", "ml_framework=sklearn"], "scikit-learn runs on the CPU only", id="gpu-sklearn"
    ),
    pytest.param(["python_version=3.9"], "Invalid choice for 'python_version'", id="python"),
    pytest.param(
        ["container_registry=quay"], "Invalid choice for 'container_registry'", id="registry"
    ),
    pytest.param(
        ["model_source=registry", "model_registry=ftp"], "'ftp' is not in", id="model-registry"
    ),
    pytest.param(
        ["container_registry=ecr", "registry_host=ecr.example.com"], "is not an ECR host", id="ecr"
    ),
    pytest.param(["image_path=iris"], "must be OWNER/NAME", id="ghcr-path"),
]


@pytest.mark.parametrize(("data", "message"), REFUSALS)
def test_bad_answer_is_refused_with_its_message(template_dir, tmp_path, data, message):
    result = copier_copy(template_dir, tmp_path / "out", *data)
    assert result.returncode != 0
    assert message in result.stderr
    assert not (tmp_path / "out").exists(), "a refused copy must leave nothing behind"


# The oldest Copier copier.yml admits, beside the pinned one: the same answers must give the
# same files byte for byte. Kept in build/ between runs (it is Copier and its dependencies).
OLDEST_COPIER = TEMPLATE_ROOT / "build" / "oldest-copier"
ANSWER_SETS = {
    "defaults": [],
    "flask-pytorch-gpu-https-acr": ["web_framework=flask", "gpu=true", "ml_framework=pytorch",
                                    "model_source=registry", "model_registry=https",
                                    "container_registry=acr"],
    "py3.11-onnxruntime-mlflow-other": ["python_version=3.11", "ml_framework=onnxruntime",
                                        "model_source=registry", "model_registry=mlflow",
                                        "container_registry=other"],
}  # fmt: skip


@pytest.fixture(scope="session")
def oldest_copier() -> Path:
    minimum = str(yaml.safe_load((TEMPLATE_ROOT / "copier.yml").read_text())["_min_copier_version"])
    version = minimum if minimum.count(".") == 2 else f"{minimum}.0"
    copier = OLDEST_COPIER / version / "bin" / "copier"
    if not copier.exists():
        shutil.rmtree(OLDEST_COPIER, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", copier.parent.parent], check=True)
        pip = [copier.with_name("pip"), "install", "--quiet", f"copier=={version}"]
        subprocess.run(pip, check=True, timeout=600)
    installed = subprocess.run([copier, "--version"], capture_output=True, text=True, check=True)
    assert installed.stdout.split()[-1] == version, installed.stdout
    return copier


@pytest.mark.parametrize("answers", ANSWER_SETS, ids=str)
def test_the_oldest_copier_allowed_renders_what_the_pinned_one_does(
    answers, oldest_copier, template_dir, tmp_path
):
    data = [arg for answer in ANSWER_SETS[answers] for arg in ("--data", answer)]
    trees = []
    for copier, out in ((COPIER, tmp_path / "pinned"), (oldest_copier, tmp_path / "oldest")):
        done = subprocess.run(
            [copier, "copy", "--defaults", "--quiet", *data, str(template_dir), str(out)],
            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, f"{copier}: {done.stderr}"
        trees.append({p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()})
    pinned, oldest = trees
    assert sorted(oldest) == sorted(pinned)
    assert [p for p in pinned if pinned[p] != oldest[p]] == []
