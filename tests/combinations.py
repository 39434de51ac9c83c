"""Every combination of the questionnaire's choices, read from copier.yml itself."""

import itertools
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

TEMPLATE_ROOT = Path(__file__).resolve().parent.parent


@cache
def choices(question: str) -> list:
    """The values a choice question allows, in copier.yml's order."""
    spec = yaml.safe_load((TEMPLATE_ROOT / "copier.yml").read_text())[question]["choices"]
    values = spec.values() if isinstance(spec, dict) else spec
    return [value["value"] if isinstance(value, dict) else value for value in values]


@cache
def cpu_only() -> set:
    """The ML frameworks copier.yml refuses with gpu=true: those whose choice has a validator."""
    spec = yaml.safe_load((TEMPLATE_ROOT / "copier.yml").read_text())["ml_framework"]["choices"]
    return {value["value"] for value in spec.values() if isinstance(value, dict)}


# What `copier copy --defaults` answers; the stages that serve one render serve this one.
DEFAULT_PYTHON = yaml.safe_load((TEMPLATE_ROOT / "copier.yml").read_text())["python_version"][
    "default"
]


@dataclass(frozen=True)
class Combination:
    python_version: str
    web_framework: str
    ml_framework: str
    gpu: bool
    model_source: str
    model_registry: str | None
    container_registry: str

    @property
    def id(self) -> str:
        ml = f"{self.ml_framework}-gpu" if self.gpu else self.ml_framework
        source = self.model_registry or self.model_source
        parts = [f"py{self.python_version}", self.web_framework, ml, source]
        return "-".join([*parts, self.container_registry])

    @property
    def answers(self) -> dict:
        answers = {
            "python_version": self.python_version,
            "web_framework": self.web_framework,
            "gpu": self.gpu,
            "ml_framework": self.ml_framework,
            "model_source": self.model_source,
            "container_registry": self.container_registry,
        }
        if self.model_registry:
            answers["model_registry"] = self.model_registry
        return answers


def all_combinations() -> list[Combination]:
    """The full matrix; questions that do not apply (`when:`) do not multiply it."""
    ml_and_gpu = [(ml, False) for ml in choices("ml_framework")]
    ml_and_gpu += [(ml, True) for ml in choices("ml_framework") if ml not in cpu_only()]
    sources = [("embedded", None)] + [("registry", r) for r in choices("model_registry")]
    return [
        Combination(python, web, ml, gpu, source, registry, container)
        for python, web, (ml, gpu), (source, registry), container in itertools.product(
            choices("python_version"),
            choices("web_framework"),
            ml_and_gpu,
            sources,
            choices("container_registry"),
        )
    ]


ALL = all_combinations()

# One render of each ML framework build, each with another serving stack: where a stage
# looks into what every build installs, without building every context again.
PER_ML_BUILD = [
    Combination(DEFAULT_PYTHON, "fastapi", "sklearn", False, "embedded", None, "ghcr"),
    Combination("3.12", "flask", "onnxruntime", False, "registry", "s3", "ecr"),
    Combination("3.13", "fastapi", "onnxruntime", True, "registry", "mlflow", "gar"),
    Combination("3.11", "flask", "pytorch", False, "registry", "gcs", "dockerhub"),
    Combination("3.14", "fastapi", "pytorch", True, "registry", "https", "acr"),
    Combination("3.13", "flask", "xgboost", False, "registry", "https", "other"),
    Combination("3.11", "fastapi", "xgboost", True, "embedded", None, "ghcr"),
    Combination("3.12", "flask", "lightgbm", False, "registry", "gcs", "acr"),
]
