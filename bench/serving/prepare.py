"""Set-up: wrk and Docker, the peers' venvs, the generated images, the model as each serves it."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .config import BENCH, REPO, REQUIREMENTS, VENVS, VPY, WORK, log, sh


def ensure_tools() -> None:
    if not shutil.which("wrk"):
        log("installing wrk (Debian package)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], env=env).returncode:
            sh("apt-get", "update", "-qq")
            sh("apt-get", "install", "-y", "-qq", "wrk", env=env)
    # The template repo's own set-up: a no-op where Docker with buildx already works.
    sh("bash", "tests/infra/docker-engine.sh", "start", cwd=REPO)


def ensure_venv(name: str) -> Path:
    """The venv `name` (VENVS), installed from its requirements file; its Python."""
    venv, requirements = VENVS[name], REQUIREMENTS[name]
    stamp, python = venv / ".installed", venv / "bin" / "python"
    if stamp.exists() and stamp.stat().st_mtime >= requirements.stat().st_mtime:
        return python
    log(f"setting up {venv.relative_to(REPO)} from {requirements.name} (a few minutes)")
    if not python.exists():
        sh(sys.executable, "-m", "venv", venv)
    sh(python, "-m", "pip", "install", "--quiet", "-r", requirements,
       log_to=WORK / f"pip-{name}.log")  # fmt: skip
    stamp.touch()
    return python


def libpython_dir(python: Path) -> str:
    """Where `python`'s libpython is: Triton's Python backend stub loads it by name, and
    must find this interpreter's, not another Python's of the same minor version."""
    code = "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))"
    return sh(python, "-c", code).stdout.strip()


def render_and_build(framework: str, ml: str) -> tuple[Path, str]:
    """Render the template with defaults, this web framework and ML framework; build its image."""
    name = framework if ml == "sklearn" else f"{framework}-{ml}"
    target = WORK / f"render-{name}"
    shutil.rmtree(target, ignore_errors=True)
    log(f"rendering and building the generated {name} service")
    copy = "copy --defaults --quiet --vcs-ref HEAD".split()
    answers = ["--data", f"web_framework={framework}", "--data", f"ml_framework={ml}"]
    sh(VENVS["anchors"] / "bin" / "copier", *copy, *answers, REPO, target,
       log_to=WORK / f"render-{name}.log")  # fmt: skip
    answers = (target / ".copier-answers.yml").read_text()
    python = next(
        line.split(":", 1)[1].strip().strip("'\"")
        for line in answers.splitlines()
        if line.startswith("python_version:")
    )
    sh("bash", "tests/infra/base-images.sh", python, cwd=REPO, log_to=WORK / "base-images.log")
    tag = f"ml-docker-template-bench-{name}:latest"
    build = "docker build --progress plain --network host -t".split()
    sh(*build, tag, target, log_to=WORK / f"build-{name}.log")
    return target, tag


def mlflow_model(model: Path) -> Path:
    log("saving the same model.joblib as an MLflow model")
    mlflow_dir = WORK / "mlflow-model"
    sh(VPY, BENCH / "mlflow_model.py", model, mlflow_dir, log_to=WORK / "mlflow-model.log")
    return mlflow_dir


# MLServer's own runtime for each sample (its inference runtimes, one package each).
MLSERVER_RUNTIMES = {
    "sklearn": "mlserver_sklearn.SKLearnModel",
    "xgboost": "mlserver_xgboost.XGBoostModel",
    "lightgbm": "mlserver_lightgbm.LightGBMModel",
}


def mlserver_repository(
    model: Path, name: str, ml: str, port: int, workers: int, settings: dict
) -> Path:
    """A model repository for `mlserver start`: its settings.json and the model's, from
    the run's settings (BENCH_MAX_BATCH_SIZE, BENCH_MAX_BATCH_TIME_S,
    BENCH_PARALLEL_WORKERS; MLServer's defaults for any not given)."""
    folder = WORK / "mlserver"
    shutil.rmtree(folder, ignore_errors=True)
    (folder / name).mkdir(parents=True)
    server = {
        "debug": False, "host": "127.0.0.1", "http_port": port, "grpc_port": port + 1,
        "metrics_endpoint": None, "gzip_enabled": False,
        "parallel_workers": int(settings.get("BENCH_PARALLEL_WORKERS", workers)),
    }  # fmt: skip
    model_settings = {
        "name": name,
        "implementation": MLSERVER_RUNTIMES[ml],
        # The artifact's own path: MLServer's LightGBM runtime would look for model.bst only.
        "parameters": {"uri": str(model), "version": "1"},
    }
    if "BENCH_MAX_BATCH_SIZE" in settings:  # adaptive batching: off unless both are set
        model_settings["max_batch_size"] = int(settings["BENCH_MAX_BATCH_SIZE"])
        model_settings["max_batch_time"] = float(settings["BENCH_MAX_BATCH_TIME_S"])
    (folder / "settings.json").write_text(json.dumps(server, indent=2))
    (folder / name / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
    return folder


def reference_predictions(ml: str, model_dir: Path, rows: list) -> list:
    """What the sample in `model_dir` predicts for `rows`, loaded straight from its artifact
    by the suite's own reference (tests/reference.py): in the anchors' venv, or for the
    boosters in MLServer's, which has their libraries."""
    python = VPY if ml == "sklearn" else VENVS["mlserver"] / "bin" / "python"
    code = (
        "import json, pathlib, sys; sys.path.insert(0, sys.argv[1]); import reference; "
        "print(json.dumps(reference.predict(pathlib.Path(sys.argv[2]), json.loads(sys.argv[3]))))"
    )
    return json.loads(sh(python, "-c", code, REPO / "tests", model_dir, json.dumps(rows)).stdout)


def versions(pythons: dict[str, Path]) -> dict:
    """The versions of what each venv serves with."""
    packages = {
        "anchors": ["mlflow", "bentoml", "litserve", "scikit-learn", "uvicorn"],
        "mlserver": ["mlserver", "uvloop", "xgboost", "lightgbm"],
        "pytriton": ["nvidia-pytriton", "numpy"],
    }
    found = {}
    for name, python in pythons.items():
        code = (
            "import importlib.metadata as m, json, sys; "
            "print(json.dumps({p: m.version(p) for p in sys.argv[1:]}))"
        )
        found.update(json.loads(sh(python, "-c", code, *packages[name]).stdout))
    return found
