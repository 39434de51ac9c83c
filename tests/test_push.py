"""Stage 4: the image pushed as the generated CI pushes it, to a real OCI registry on loopback,
under the tags its workflow computes, then pulled back and run."""

import json
import re

import pytest
import yaml

from combinations import DEFAULT_PYTHON, Combination
from containers import serving
from docker_host import sh

pytestmark = pytest.mark.docker

# One registry that allows moving tags, one whose repositories enforce immutable ones.
PUSHED = [
    Combination(DEFAULT_PYTHON, "fastapi", "sklearn", False, "embedded", None, registry)
    for registry in ("ghcr", "ecr")
]
COMMIT = "5f3c0e2a9b7d41c68e0f2a3b4c5d6e7f80912345"
EVENTS = {  # the pushes the workflow tags images for, as GitHub describes them
    "commit on main": {"ref_type": "branch", "ref_name": "main"},
    "tag v1.2.3": {"ref_type": "tag", "ref_name": "v1.2.3"},
}
SEMVER = re.compile(r"v?(\d+)\.(\d+)\.(\d+)$")


def metadata_tags(meta: dict, event: dict) -> list[str]:
    """The tags docker/metadata-action gives the image for `event`, from the step's `tags`
    and `flavor` inputs: the rules of the types the generated workflows use."""
    tags = []
    for line in meta["tags"].split("\n"):
        if not line.strip():
            continue
        spec = dict(part.split("=", 1) for part in line.strip().split(","))
        enable = spec.get("enable", "true")
        if enable == "${{ github.ref_type == 'branch' }}":
            enable = str(event["ref_type"] == "branch").lower()
        assert enable in ("true", "false"), f"an enable expression this suite can't judge: {enable}"
        if enable == "false":
            continue
        version = SEMVER.match(event["ref_name"]) if event["ref_type"] == "tag" else None
        if spec["type"] == "ref" and spec["event"] == "branch" and event["ref_type"] == "branch":
            tags.append(event["ref_name"])
        elif spec["type"] == "semver" and version:
            major, minor, patch = version.groups()
            pattern = spec["pattern"].replace("{{version}}", f"{major}.{minor}.{patch}")
            tags.append(pattern.replace("{{major}}", major).replace("{{minor}}", minor))
        elif spec["type"] == "sha":
            tags.append(f"sha-{COMMIT[:7]}")
        elif spec["type"] not in ("ref", "semver", "sha"):
            raise AssertionError(f"a tag type this suite does not know: {line}")
    latest = dict(f.split("=", 1) for f in meta.get("flavor", "latest=auto").split())["latest"]
    if latest == "auto" and any(t.startswith("type=semver") for t in meta["tags"].split()):
        tags += ["latest"] if event["ref_type"] == "tag" else []
    return tags


@pytest.mark.parametrize("combination", PUSHED, ids=lambda c: c.container_registry)
def test_pushes_under_the_workflows_tags_and_pulls_back_the_image_it_built(
    combination, builds, render, oci_registry
):
    workflow = yaml.safe_load((render(combination) / ".github/workflows/ci.yaml").read_text())
    job = workflow["jobs"]["image"]
    (meta,) = [s for s in job["steps"] if s.get("id") == "meta"]
    # The workflow's repository, on the loopback registry instead of the cloud one.
    repository = job["env"]["IMAGE"].split("/", 1)[1]
    name = f"{oci_registry.host}/{repository}"
    built = builds.image(combination)
    image_id = sh("docker", "image", "inspect", "--format", "{{.Id}}", built).strip()

    # The workflow pushes by digest and tags that digest; this engine (no containerd
    # image store) pushes by tag, and the registry must then serve one digest for all.
    tags_of = {}
    for event_name, event in EVENTS.items():
        tags_of[event_name] = metadata_tags(meta["with"], event)
        assert tags_of[event_name], f"no tag for a {event_name}"
        for tag in tags_of[event_name]:
            sh("docker", "tag", built, f"{name}:{tag}")
            sh("docker", "push", "--quiet", f"{name}:{tag}", timeout=600)
    every_tag = [tag for tags in tags_of.values() for tag in tags]
    digests = {oci_registry.digest_of(repository, tag) for tag in every_tag}
    assert len(digests) == 1, digests
    (digest,) = digests
    assert oci_registry.tags(repository) == set(every_tag)
    if combination.container_registry in ("ecr", "gar"):
        # Immutable tags: no tag is pushed twice, none is a moving one.
        assert len(every_tag) == len(set(every_tag)), tags_of
        assert tags_of == {"commit on main": [f"sha-{COMMIT[:7]}"], "tag v1.2.3": ["1.2.3"]}
    else:
        assert tags_of["commit on main"] == ["main", f"sha-{COMMIT[:7]}"]
        assert set(tags_of["tag v1.2.3"]) == {"1.2.3", "1.2", f"sha-{COMMIT[:7]}", "latest"}

    # Every local copy gone (the suite's own tag too), then pulled back by digest.
    sh("docker", "image", "rm", built, *(f"{name}:{tag}" for tag in set(every_tag)))
    assert not sh("docker", "image", "ls", "--quiet", image_id.removeprefix("sha256:")[:12])
    sh("docker", "pull", "--quiet", f"{name}@{digest}", timeout=600)
    pulled = json.loads(sh("docker", "image", "inspect", f"{name}@{digest}"))[0]
    sh("docker", "tag", f"{name}@{digest}", built)  # the later stages' image again
    assert pulled["Id"] == image_id
    assert f"{name}@{digest}" in pulled["RepoDigests"]

    with serving(f"{name}@{digest}") as service:
        response = service.predict([[5.1, 3.5, 1.4, 0.2]])
        assert response.status_code == 200, response.text
        assert len(response.json()["predictions"]) == 1
