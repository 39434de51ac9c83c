"""The questionnaire through Copier's own command line, as a user runs it (no --trust)."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

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
