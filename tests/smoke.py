"""The smoke check of an image the generated suite does not run in (tests/plan.py)."""

import hashlib
import json
from pathlib import Path

import containers
import reference
from combinations import Combination
from containers import read_only, serving
from docker_host import sh

# What decides the check's outcome besides the image and the mounted model: this code.
HARNESS = (Path(__file__), Path(reference.__file__), Path(containers.__file__))


def serves_the_sample(image: str, c: Combination, project: Path) -> tuple[int, object, list]:
    """Run the image as production does, one worker, and ask it for the probe rows: the
    answer's status and body, and the service's log (every line of it JSON)."""
    env, mounts = {"WORKERS": "1"}, ()
    if c.gpu:
        env["ALLOW_CPU_FALLBACK"] = "true"
    if c.model_source == "registry":
        # Where an init container (or KServe's storage initializer) would put it: MODEL_DIR
        # without MODEL_URI, verified against the digest all the same.
        mounts = (read_only(project / "model", "/mnt/models"),)
        env |= {"MODEL_DIR": "/mnt/models", "MODEL_SHA256": reference.digest(project / "model")}
    with serving(image, mounts=mounts, **env) as service:
        response = service.predict(reference.probe_rows(50))
        return response.status_code, response.json(), service.log_lines()


def serves_the_sample_remembered(
    image: str, c: Combination, project: Path, store: Path
) -> tuple[tuple[int, object, list], bool]:
    """serves_the_sample, and whether its answer was remembered from an earlier run.

    As BuildKit does for a test stage whose layers are all cached, an image the same to
    the byte (its ID), run by the same harness on the same mounted model, is not run
    again: its answer from an earlier run of this checkout is judged afresh instead. Only
    what the check observed is kept, never its verdict; a fresh clone runs every check.
    """
    parts = [sh("docker", "image", "inspect", "--format", "{{.Id}}", image).strip()]
    parts += [hashlib.sha256(path.read_bytes()).hexdigest() for path in HARNESS]
    parts += [c.gpu, c.model_source]
    if c.model_source == "registry":
        model = sorted(p for p in (project / "model").rglob("*") if p.is_file())
        parts += [(p.name, hashlib.sha256(p.read_bytes()).hexdigest()) for p in model]
    key = hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]
    answer = store / f"{key}.json"
    if answer.exists():
        return tuple(json.loads(answer.read_text())), True
    observed = serves_the_sample(image, c, project)
    if observed[0] == 200:  # anything else is looked at again next run
        store.mkdir(parents=True, exist_ok=True)
        answer.write_text(json.dumps(observed))
    return observed, False
