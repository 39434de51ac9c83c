"""An MLflow tracking server with a model registry: sqlite backend, artifacts served by it."""

import sys
from pathlib import Path

import requests

from .process import ServerProcess, free_port

BIN = Path(sys.executable).parent


class MlflowServer(ServerProcess):
    def __init__(self, root: Path, port: int | None = None) -> None:
        port = port or free_port()
        self.url = f"http://127.0.0.1:{port}"
        command = [
            BIN / "mlflow", "server", "--host", "127.0.0.1", "--port", port, "--workers", "1",
            "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination", root / "artifacts", "--serve-artifacts",
        ]  # fmt: skip
        super().__init__("mlflow", command, port, ready=self._healthy)

    def _healthy(self) -> bool:
        try:
            return requests.get(f"{self.url}/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def _client(self):
        import mlflow  # heavy: only where the MLflow registry is tested

        mlflow.set_tracking_uri(self.url)
        return mlflow

    def log_flavored(self, flavor: str, model, example, name: str, alias: str, **options) -> str:
        """Log a model with one of MLflow's own flavours (`mlflow.<flavor>.log_model`: MLmodel,
        signature), register it and alias it."""
        mlflow = self._client()
        from mlflow.models import infer_signature

        signature = infer_signature(example, model.predict(example))
        with mlflow.start_run():
            info = getattr(mlflow, flavor).log_model(
                model, name="model", signature=signature, registered_model_name=name, **options
            )
        mlflow.MlflowClient().set_registered_model_alias(name, alias, info.registered_model_version)
        return f"models:/{name}@{alias}"

    def log_directory(self, model_dir: Path, name: str) -> tuple[str, str]:
        """Log `model_dir` as run artifacts and register it: (runs:/ URI, models:/ URI)."""
        mlflow = self._client()
        with mlflow.start_run() as run:
            mlflow.log_artifacts(str(model_dir), artifact_path="model")
        # A directory of files, not a logged MLflow model: registered by its artifact location.
        client = mlflow.MlflowClient()
        client.create_registered_model(name)
        source = f"{run.info.artifact_uri}/model"
        version = client.create_model_version(name, source, run_id=run.info.run_id).version
        return f"runs:/{run.info.run_id}/model", f"models:/{name}/{version}"

    def client_env(self) -> dict[str, str]:
        return {"MLFLOW_TRACKING_URI": self.url}
