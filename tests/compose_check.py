"""What a registry-mode project's copy message tells every user to run: `docker compose up
--build --wait` beside its local registry, then one prediction. Pure Docker work, so it
runs on the Docker side behind the builds (tests/image_builds.py); the test judges it."""

import json
import os
import re
import subprocess
import threading
from pathlib import Path

import requests
import yaml

from docker_host import INFRA, sh

# Every Compose project publishes its service on 127.0.0.1:8000, as does the workflow's
# check of the pushed image (test_serve): whoever binds it takes this first.
PORT_8000 = threading.Lock()


def compose_up_and_predict(project: Path, name: str, base: str) -> tuple[str, object, list[str]]:
    """What `compose up` said if it failed ('' if not), the answer to the example request,
    and the registry images' notes (stand-ins). `base`, the project's base image, is set
    up with the engine; the registry images are made here, as a newcomer's pull would."""
    services = yaml.safe_load((project / "compose.yaml").read_text())["services"].values()
    (own_image,) = [service["image"] for service in services if "build" in service]
    needed = {service["image"] for service in services} - {own_image, base}
    with PORT_8000:
        notes = sh("bash", INFRA / "registry-images.sh", *sorted(needed), timeout=900)
        up = [
            "docker",
            "compose",
            "--project-name",
            name,
            "up",
            "--build",
            "--wait",
            "--quiet-pull",
        ]
        # As on a newcomer's machine: none of the variables compose.yaml reads is set. (The
        # suite's own clients set some, MLFLOW_TRACKING_URI among them, for its servers.)
        interpolated = set(re.findall(r"\$\{(\w+)", (project / "compose.yaml").read_text()))
        clean = {key: value for key, value in os.environ.items() if key not in interpolated}
        try:
            result = subprocess.run(
                up, cwd=project, env=clean, capture_output=True, text=True, timeout=600
            )
            if result.returncode != 0:
                logs = ["docker", "compose", "--project-name", name, "logs", "--no-color"]
                said = subprocess.run(logs, cwd=project, capture_output=True, text=True, timeout=60)
                failure = result.stdout + result.stderr + said.stdout + said.stderr
                return failure, None, notes.splitlines()
            example = json.loads((project / "model/example-request.json").read_text())
            answer = requests.post("http://127.0.0.1:8000/predict", json=example, timeout=10)
            return "", answer.json(), notes.splitlines()
        finally:
            down = ["docker", "compose", "--project-name", name, "down", "--volumes"]
            subprocess.run([*down, "--timeout", "5"], cwd=project, capture_output=True, timeout=120)
