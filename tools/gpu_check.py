"""Prove a GPU render on a real GPU: the generated service, started directly with the
machine's own PyTorch, becomes ready, says `cuda` in /metadata, and answers the probe rows
exactly as the sample does on the CPU.

    .venv/bin/python tools/gpu_check.py prepare build/gpu-check   # here: render, wheels
    python3 tools/gpu_check.py run build/gpu-check                # on the GPU machine

`prepare` renders the default PyTorch GPU project for each of Pythons 3.11 to 3.14 and
downloads its serving layer's hashed wheels (the GPU machine reaches no index); `run`
needs only a Python of those with CUDA PyTorch, whose PyTorch it uses. It prints one JSON
object and exits non-zero on any failure. CI has no GPU: run it whenever a GPU machine is
at hand, and keep its output.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ANSWERS = {"ml_framework": "pytorch", "gpu": True, "web_framework": "fastapi"}
PYTHONS = ["3.11", "3.12", "3.13", "3.14"]  # what the serving libraries support


def lock_entries(lock: Path) -> dict[str, str]:
    """A lock's entries by name: each pin with its hash lines."""
    entries, name = {}, None
    for line in lock.read_text().splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            name = line.split("==")[0]
            entries[name] = line
        elif name and line.strip().startswith("--hash"):
            entries[name] += "\n" + line
    return entries


def prepare(into: Path) -> None:
    """For each Python: the project rendered, and its serving layer (the lock's entries
    the ML layer does not hold: PyTorch comes from the GPU machine) as hashed wheels."""
    from copier import run_copy

    for python in PYTHONS:
        project = into / f"py{python}"
        data = {**ANSWERS, "python_version": python}
        run_copy(str(ROOT), project, data=data, defaults=True, vcs_ref="HEAD", quiet=True)
        ml = lock_entries(project / "requirements/ml.lock")
        serving = lock_entries(project / "requirements/serving.lock")
        layer = [entry for name, entry in serving.items() if name not in ml]
        (project / "serving-layer.lock").write_text("\n".join(layer) + "\n")
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--dest", into / "wheels",
             "--no-deps", "--require-hashes", "--only-binary=:all:", "--python-version", python,
             *[f"--platform=manylinux_2_{glibc}_x86_64" for glibc in (17, 28, 34)],
             "-r", project / "serving-layer.lock"],
            check=True,
        )  # fmt: skip
    print(f"prepared {into}: carry it to the GPU machine")


def get(url: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (loopback)
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def run(prepared: Path) -> int:
    import torch

    project = (prepared / f"py{sys.version_info.major}.{sys.version_info.minor}").resolve()
    venv = Path(tempfile.mkdtemp()) / "venv"
    # The machine's PyTorch (and its CUDA) seen from the venv; the rest from the wheels.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", venv], check=True)
    subprocess.run(
        [venv / "bin/pip", "install", "--quiet", "--no-index", "--find-links",
         prepared / "wheels", "--no-deps", "--require-hashes", "-r",
         project / "serving-layer.lock"],
        check=True,
    )  # fmt: skip
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    package = next(p.name for p in (project / "src").iterdir() if (p / "app.py").exists())
    path = os.pathsep.join(filter(None, [str(project / "src"), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "MODEL_DIR": str(project / "model"),
           "WORKERS": "1", "PORT": str(port)}  # fmt: skip
    server = subprocess.Popen(
        [venv / "bin/gunicorn", "--config", f"python:{package}.gunicorn_conf",
         "--bind", f"127.0.0.1:{port}", f"{package}.app:create_app()"],
        env=env, cwd=project,
    )  # fmt: skip
    url, report = f"http://127.0.0.1:{port}", {"torch": torch.__version__}
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if get(f"{url}/readyz")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(1)
        report["ready"] = get(f"{url}/readyz")
        report["metadata"] = get(f"{url}/metadata")[1]
        rows = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3]]
        rows += torch.rand(200, 4, generator=torch.Generator().manual_seed(0)).mul(8).tolist()
        status, answer = get(f"{url}/predict", {"instances": rows})
        module = torch.export.load(str(project / "model/model.pt2")).module()
        with torch.inference_mode():
            on_cpu = module(torch.tensor(rows, dtype=torch.float32)).tolist()
        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        report |= {"gpu": gpu, "predict_status": status,
                   "equal_to_cpu": answer.get("predictions") == on_cpu}  # fmt: skip
    finally:
        server.terminate()
        server.wait(60)
    passed = report["ready"][0] == 200 and report["metadata"].get("device") == "cuda"
    passed = passed and report["equal_to_cpu"]
    print(json.dumps({"passed": passed, **report}, indent=1))
    return 0 if passed else 1


if __name__ == "__main__":
    command, folder = sys.argv[1], Path(sys.argv[2])
    sys.exit(prepare(folder) if command == "prepare" else run(folder))
