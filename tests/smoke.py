"""The smoke check of an image the generated suite does not run in (tests/plan.py)."""

from pathlib import Path

import reference
from combinations import Combination
from containers import read_only, serving


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
