"""Stage 0: the suite's own tools are what pyproject.toml pins, every package hashed, and
the template's own workflow runs every shard of the suite.

`make` installs requirements-dev.lock with --require-hashes; tools/relock.py makes it from
pyproject.toml's test extra. A pin changed in one and not the other fails here, before any
stage runs on tools other than those pinned.
"""

import re
import sys
import tomllib

import yaml

from checks import workflows
from combinations import TEMPLATE_ROOT

sys.path.insert(0, str(TEMPLATE_ROOT / "tools"))
from relock import TOOLING, tooling_command  # noqa: E402

ENTRY = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_tooling_lock_is_made_from_the_test_extra():
    lock = (TEMPLATE_ROOT / TOOLING).read_text()
    header = lock.splitlines()[1].removeprefix("#").strip()
    # uv leaves index URLs out of the header.
    command = [a for a in tooling_command("") if not a.startswith("--extra-index-url=")]
    assert header == " ".join(command), f"{TOOLING} was not made by tools/relock.py"

    locked: dict[str, set[str]] = {}
    hashed: dict[str, int] = {}
    name = None
    for line in lock.splitlines():
        if match := ENTRY.match(line):
            name = normalize(match[1])
            locked.setdefault(name, set()).add(match[2])
        elif name and line.strip().startswith("--hash=sha256:"):
            hashed[name] = hashed.get(name, 0) + 1
    assert locked and set(hashed) == set(locked), set(locked) - set(hashed)

    pyproject = tomllib.loads((TEMPLATE_ROOT / "pyproject.toml").read_text())
    pinned: dict[str, set[str]] = {}  # a package pinned per Python version has two pins
    for pin in pyproject["project"]["optional-dependencies"]["test"]:
        match = ENTRY.match(pin)
        assert match, f"pyproject.toml: '{pin}' is not pinned with =="
        pinned.setdefault(normalize(match[1]), set()).add(match[2])
    for package, versions in pinned.items():
        assert locked.get(package) == versions, (
            f"run tools/relock.py: pyproject.toml pins {package}=={sorted(versions)}, "
            f"{TOOLING} has {sorted(locked.get(package, []))}"
        )


def test_the_templates_own_workflow_is_sound_and_runs_every_shard():
    assert workflows(TEMPLATE_ROOT) == ""
    workflow = yaml.safe_load((TEMPLATE_ROOT / ".github/workflows/tests.yaml").read_text())
    job = workflow["jobs"]["shard"]
    (run,) = [s for s in job["steps"] if "PYTEST_ADDOPTS" in s.get("env", {})]
    shards = int(run["env"]["PYTEST_ADDOPTS"].rpartition("/")[2])
    assert job["strategy"]["matrix"]["shard"] == list(range(1, shards + 1))
    assert workflow["jobs"]["tests"]["needs"] == "shard"
