"""Each ML build's image, over its base, raw and gzipped, against a docker-init-style twin.

    .venv/bin/python tools/image_sizes.py [BUILD ...]   # after a suite run; BUILD: sklearn,
                                                       # onnxruntime, onnxruntime-gpu, pytorch-gpu

For each ML build of the default answers (FastAPI, the model embedded), two images of the
same rendered project: this template's runtime image, as the suite built it (found through
build/test-report/builds.json), and its twin, built here with the Dockerfile `docker init`
writes for a Python service: the base image, the same locks installed by pip into the
system Python, the context copied whole, nothing slimmed. Over the base: raw (the sizes
`docker image inspect` gives, less the base's) and gzipped (each layer above the base as
`docker save` holds it, through gzip -6: about what a pull moves). PyTorch's CPU build is
left out: its wheels come from PyTorch's own index, which the suite serves from a local
copy during its run only. Prints a Markdown table; writes build/image-sizes.json.
"""

import gzip
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from combinations import DEFAULT_PYTHON, Combination  # noqa: E402
from docker_host import IMAGE_PREFIX  # noqa: E402

BUILDS = {
    "sklearn": ("sklearn", False),
    "onnxruntime": ("onnxruntime", False),
    "onnxruntime-gpu": ("onnxruntime", True),
    "pytorch-gpu": ("pytorch", True),
}
TWIN_DOCKERFILE = """\
# What `docker init` writes for a Python service, with this project's locks.
FROM {base}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
RUN useradd --uid 10001 --no-create-home --shell /sbin/nologin appuser
RUN --mount=type=cache,target=/root/.cache/pip \\
    --mount=type=bind,source=requirements,target=requirements \\
    python -m pip install --require-hashes --no-deps \\
        -r requirements/ml.lock -r requirements/serving.lock
USER appuser
COPY . .
EXPOSE 8000
CMD ["gunicorn", "--config", "python:{package}.gunicorn_conf", "{package}.app:app"]
"""


def sh(*command: str) -> str:
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


def image_of(combination: Combination) -> str:
    contexts = json.loads((ROOT / "build/test-report/builds.json").read_text())["contexts"]
    (context,) = [key for key, c in contexts.items() if combination.id in c["combinations"]]
    return f"{IMAGE_PREFIX}:{context}"


def layers_over(image: str, base: str) -> tuple[int, int]:
    """(raw, gzipped) bytes of the layers of `image` that `base` does not have, read from
    `docker save` as it streams (an image of gigabytes is never written out whole)."""
    base_layers = set(json.loads(sh("docker", "image", "inspect", base))[0]["RootFS"]["Layers"])
    sizes, documents = {}, {}
    with subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE) as save:
        with tarfile.open(fileobj=save.stdout, mode="r|") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                data = tar.extractfile(member)
                if member.name.endswith(".json"):
                    documents[member.name] = json.load(data)
                    continue
                counter, raw = _Counter(), 0
                with gzip.GzipFile(fileobj=counter, mode="wb", compresslevel=6) as packed:
                    while chunk := data.read(1 << 22):
                        raw += len(chunk)
                        packed.write(chunk)
                sizes[member.name] = (raw, counter.size)
    assert save.returncode == 0, f"docker save {image} failed"
    (manifest,) = documents["manifest.json"]
    diff_ids = documents[manifest["Config"]]["rootfs"]["diff_ids"]
    over = [sizes[layer] for layer, diff_id in zip(manifest["Layers"], diff_ids, strict=True)
            if diff_id not in base_layers]  # fmt: skip
    return sum(raw for raw, _ in over), sum(packed for _, packed in over)


class _Counter:
    """A write-only file that keeps only the count of bytes written to it."""

    size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass


def twin(project: Path, base: str, package: str, tag: str) -> str:
    dockerfile = project / "Dockerfile.docker-init"
    dockerfile.write_text(TWIN_DOCKERFILE.format(base=base, package=package))
    subprocess.run(
        ["docker", "build", "--file", str(dockerfile), "--tag", tag, str(project)],
        check=True, capture_output=True,
    )  # fmt: skip
    return tag


def render(combination: Combination, into: Path) -> Path:
    c = combination
    answers = {"python_version": c.python_version, "ml_framework": c.ml_framework,
               "gpu": str(c.gpu).lower(), "web_framework": c.web_framework}  # fmt: skip
    data = [f"--data={key}={value}" for key, value in answers.items()]
    sh(str(ROOT / ".venv/bin/copier"), "copy", "--defaults", "--quiet", "--vcs-ref=HEAD", *data,
       str(ROOT), str(into))  # fmt: skip
    return into


def mib(size: int) -> str:
    return f"{size / (1 << 20):,.0f}"


def main(names: list[str]) -> None:
    base = f"python:{DEFAULT_PYTHON}-slim"
    rows = {}
    for name in names or BUILDS:
        ml, gpu = BUILDS[name]
        combination = Combination(DEFAULT_PYTHON, "fastapi", ml, gpu, "embedded", None, "ghcr")
        with tempfile.TemporaryDirectory() as work:
            project = render(combination, Path(work) / "service")
            twin_image = twin(project, base, "iris_classifier", f"{IMAGE_PREFIX}-twin:{name}")
        try:
            ours, theirs = layers_over(image_of(combination), base), layers_over(twin_image, base)
        finally:
            sh("docker", "image", "rm", twin_image)
        rows[name] = {"template": ours, "docker-init twin": theirs}
        print(f"{name}: template {ours}, twin {theirs}", file=sys.stderr)
    print(f"| ML build ({base}) | template raw | twin raw | template gzipped | twin gzipped |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, sizes in rows.items():
        (raw, packed), (twin_raw, twin_packed) = sizes["template"], sizes["docker-init twin"]
        print(f"| {name} | {mib(raw)} MiB | {mib(twin_raw)} MiB | {mib(packed)} MiB "
              f"| {mib(twin_packed)} MiB |")  # fmt: skip
    report = ROOT / "build/image-sizes.json"
    report.write_text(json.dumps({"base": base, "bytes_over_base": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
