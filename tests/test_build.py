"""Stage 5: `docker build` for every combination, and what runs inside each image.

Which image runs the generated suite and which gets the smoke check: tests/plan.py.
"""

import json
import re
import runpy
from pathlib import Path

import pytest

import reference
from combinations import ALL, PER_ML_BUILD, Combination
from docker_host import context_files, sh
from plan import FULL_SUITE, PYTHONS, SMOKED, SOURCE_TREES

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


# Run inside a runtime image: what its libraries still carry that no service runs, and
# whether each module has its source and its bytecode. Looks for itself rather than asking
# scripts/slim_venv.py: a symbol table by its name among the section names (NVIDIA's
# libraries hold ".symtab" in their data), sources by suffix.
LEFTOVERS = """
import importlib.util, inspect, json, pathlib, shutil, struct, sys, sysconfig
import numpy
site = pathlib.Path(sysconfig.get_path("purelib"))
files = [p for p in site.rglob("*") if p.is_file() and not p.is_symlink()]
def compiles(path):
    try:
        return bool(compile(path.read_bytes(), str(path), "exec", dont_inherit=True))
    except (SyntaxError, ValueError):  # a template or a file for another Python
        return False
def symbols(path):  # whether an ELF (64-bit, little-endian) names a .symtab section
    with path.open("rb") as f:
        head = f.read(64)
        if len(head) < 64 or head[:4] != b"\\x7fELF":
            return False
        table, = struct.unpack_from("<Q", head, 40)
        entry, _, names = struct.unpack_from("<HHH", head, 58)
        f.seek(table + names * entry)
        offset, size = struct.unpack_from("<QQ", f.read(entry), 24)
        f.seek(offset)
        return b"\\0.symtab\\0" in b"\\0" + f.read(size)
def misaligned(path):  # a PT_LOAD segment glibc's loader refuses to map
    with path.open("rb") as f:
        head = f.read(64)
        if len(head) < 64 or head[:4] != b"\\x7fELF":
            return False
        table, = struct.unpack_from("<Q", head, 32)
        entry, count = struct.unpack_from("<HH", head, 54)
        f.seek(table)
        segments = [struct.unpack_from("<IIQQQQQQ", f.read(entry)) for _ in range(count)]
        return any(s[0] == 1 and s[7] > 1 and (s[3] - s[2]) % s[7] for s in segments)
libraries = [p for p in files if ".so" in p.suffixes]
print(json.dumps({
    "without bytecode": [
        str(p) for p in files if p.suffix == ".py"
        and not pathlib.Path(importlib.util.cache_from_source(p)).exists() and compiles(p)
    ],
    "bytecode": sum(p.suffix == ".pyc" for p in files),
    "sources": sum(p.suffix == ".py" for p in files),
    "a library's source": len(inspect.getsource(numpy)),
    "test suites": [str(p) for p in site.glob("*/**/tests") if p.is_dir()],
    "build files": [str(p) for p in files if p.suffix in (".h", ".c", ".pyx", ".pxd", ".pyi")],
    "symbol tables": [str(p) for p in libraries if symbols(p)],
    "unloadable": [str(p) for p in libraries if misaligned(p)],
    "strip": shutil.which("strip"),
    "debian": pathlib.Path("/etc/debian_version").read_text().strip(),
}))
"""


# The runtime keeps what runs: bytecode and compiled libraries, and the sources a
# traceback shows, without symbol tables, test suites or build files, and no build tool
# (scripts/slim_venv.py).
@pytest.mark.parametrize("combination", PER_ML_BUILD, ids=lambda c: c.id)
def test_the_runtime_keeps_only_what_runs(combination: Combination, builds, render):
    tag = builds.image(combination)
    found = json.loads(
        sh("docker", "run", "--rm", "--entrypoint", "python", tag, "-c", LEFTOVERS, timeout=180)
    )
    # The libraries that read their build files as they run keep them.
    slim_venv = runpy.run_path(str(render(combination) / "scripts" / "slim_venv.py"))
    found["build files"] = [
        path
        for path in found["build files"]
        if path.split("/site-packages/")[1].split("/")[0] not in slim_venv["KEEP_BUILD_FILES"]
    ]
    # Debian 12's binutils (2.40) makes unloadable copies of some libraries patchelf
    # rewrote: slim_venv.py keeps those whole, symbols and all. Debian 13's strips all.
    if found.pop("debian").startswith("12."):
        found.pop("symbol tables")
    assert found.pop("bytecode") > 1000 and found.pop("sources") > 1000
    assert found.pop("a library's source") > 0
    leftovers = {k: v for k, v in found.items() if v}
    assert not leftovers, json.dumps(leftovers, indent=1)[:3000]


# The Python version changes only the base image and the locks: what the plan's choice of
# one suite run per source tree rests on. Any other difference is a behaviour that Python
# could change, and would need its own run.
@pytest.mark.parametrize("tree", SOURCE_TREES, ids=lambda tree: tree.id)
def test_a_source_tree_differs_between_pythons_only_in_base_image_and_locks(tree, render):
    contexts = {python: context_files(render(tree.at(python))) for python in PYTHONS}
    first, *others = PYTHONS
    for python in others:
        assert contexts[python].keys() == contexts[first].keys(), python
        for name, content in contexts[python].items():
            lock = name.startswith("requirements/") and name.endswith(".lock")
            if lock or content == contexts[first][name]:
                continue
            ours = content.decode().splitlines()
            theirs = contexts[first][name].decode().splitlines()
            assert len(ours) == len(theirs), f"{name}: py{python} and py{first} differ in length"
            for line, other in zip(ours, theirs, strict=True):
                if name.startswith("requirements/") and same_package(line, other):
                    continue  # a pin that differs by Python, as lock entries may
                if line != other:  # the same line, but for the version it names
                    assert line == spelled_for(other, first, python), f"{name}: {line!r}"


def same_package(pin: str, other: str) -> bool:
    """Whether two requirement lines pin one package (at any versions)."""
    return "==" in pin and pin.partition("==")[0] == other.partition("==")[0]


def spelled_for(line: str, python: str, other: str) -> str:
    """A line naming `python` (3.13 or py313) as it reads for `other`."""
    return line.replace(python, other).replace(python.replace(".", ""), other.replace(".", ""))


def lock_entries(project: Path, layer: str) -> set[str]:
    """requirements/LAYER.lock's entries: each requirement line with its hash lines."""
    text = (project / "requirements" / f"{layer}.lock").read_text()
    entries = re.split(r"\n(?=\S)", re.sub(r"(?m)^\s*#.*\n", "", text))
    return {entry.strip() for entry in entries if entry.strip()}


# An image installs ml.lock and serving.lock; a test stage adds test.lock's own entries. A
# smoke-checked image's test stage is not built: each of those entries (a pinned release,
# its hashes, its marker) must install in the test stage of a suite image of the same
# Python. With --no-deps, an entry installs alike whatever else the lock holds.
@pytest.mark.parametrize("combination", SMOKED, ids=lambda c: c.id)
def test_every_test_lock_entry_installs_in_a_suite_image_of_its_python(combination, render):
    def test_only(c: Combination) -> set[str]:
        project = render(c)
        return lock_entries(project, "test") - lock_entries(project, "serving")

    installed = set().union(
        *(test_only(c) for c in FULL_SUITE if c.python_version == combination.python_version)
    )
    assert test_only(combination) <= installed, test_only(combination) - installed


# Each source tree's own suite, in its image's test stage (GPU ones on the CPU fallback), in
# the Python the plan gives it.
# The docker side queues these behind the builds (in_image), so they run while other stages do.
@pytest.mark.in_image("suite")
@pytest.mark.parametrize("combination", FULL_SUITE, ids=lambda c: c.id)
def test_generated_tests_pass_in_the_image(combination: Combination, builds):
    builds.run_tests(combination)


# Every other image: started as production starts it, it serves the probe rows exactly as
# the artifact does when loaded directly (registry mode: from a mounted model folder).
@pytest.mark.in_image("smoke")
@pytest.mark.parametrize("combination", SMOKED, ids=lambda c: c.id)
def test_every_other_image_serves_the_sample(combination: Combination, builds, render):
    status, answer, log = builds.smoke(combination)
    expected = reference.predict(render(combination) / "model", reference.probe_rows(50))
    assert (status, answer) == (200, {"predictions": expected})
    assert not [line for line in log if line["level"] in ("error", "critical")], log
