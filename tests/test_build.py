"""Stage 2: `docker build` for every combination, GPU ones too."""

import json

import pytest

from combinations import ALL, Combination
from docker_host import sh

pytestmark = pytest.mark.docker


@pytest.mark.parametrize("combination", ALL, ids=lambda c: c.id)
def test_build(combination: Combination, builds, render):
    tag = builds.image(combination)
    config = json.loads(sh("docker", "image", "inspect", "--format", "{{json .Config}}", tag))
    answers_name = (render(combination) / ".copier-answers.yml").read_text()
    assert f"project_name: {config['Labels']['org.opencontainers.image.title']}" in answers_name
    assert config["User"] == "10001"
    assert config["Cmd"][0] == "gunicorn"
    assert "8000/tcp" in config["ExposedPorts"]
    assert "/readyz" in " ".join(config["Healthcheck"]["Test"])


# Every combination's own suite, in its image's test stage (GPU ones on the CPU fallback).
# Combinations that share a build context share the run.
@pytest.mark.parametrize("combination", ALL, ids=lambda c: c.id)
def test_generated_tests_pass_in_the_image(combination: Combination, builds):
    builds.run_tests(combination)
