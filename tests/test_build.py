"""Stage 2: `docker build` for every combination, GPU ones too."""

import json
import runpy

import pytest

from combinations import ALL, PER_ML_BUILD, Combination
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


# Run inside a runtime image: what its libraries still carry that no service runs. Looks
# for itself rather than asking scripts/slim_venv.py: a symbol table by its name among the
# section names (NVIDIA's libraries hold ".symtab" in their data), sources by suffix.
LEFTOVERS = """
import json, pathlib, shutil, struct, sysconfig
site = pathlib.Path(sysconfig.get_path("purelib"))
files = [p for p in site.rglob("*") if p.is_file() and not p.is_symlink()]
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
    "sources": [str(p) for p in files if p.suffix == ".py"],
    "bytecode": sum(p.suffix == ".pyc" for p in files),
    "test suites": [str(p) for p in site.glob("*/**/tests") if p.is_dir()],
    "build files": [str(p) for p in files if p.suffix in (".h", ".c", ".pyx", ".pxd", ".pyi")],
    "symbol tables": [str(p) for p in libraries if symbols(p)],
    "unloadable": [str(p) for p in libraries if misaligned(p)],
    "strip": shutil.which("strip"),
    "debian": pathlib.Path("/etc/debian_version").read_text().strip(),
}))
"""


# The runtime keeps what runs: bytecode and compiled libraries, without their sources,
# symbol tables, test suites or build files, and no build tool (scripts/slim_venv.py).
@pytest.mark.parametrize("combination", PER_ML_BUILD, ids=lambda c: c.id)
def test_the_runtime_keeps_only_what_runs(combination: Combination, builds, render):
    tag = builds.image(combination)
    found = json.loads(
        sh("docker", "run", "--rm", "--entrypoint", "python", tag, "-c", LEFTOVERS, timeout=180)
    )
    # The libraries that read their own sources as they run keep them.
    kept = runpy.run_path(str(render(combination) / "scripts" / "slim_venv.py"))["KEEP_SOURCE"]
    found["sources"] = [
        s for s in found["sources"] if s.split("/site-packages/")[1].split("/")[0] not in kept
    ]
    # Debian 12's binutils (2.40) makes unloadable copies of some libraries patchelf
    # rewrote: slim_venv.py keeps those whole, symbols and all. Debian 13's strips all.
    if found.pop("debian").startswith("12."):
        found.pop("symbol tables")
    assert found.pop("bytecode") > 1000
    leftovers = {k: v for k, v in found.items() if v}
    assert not leftovers, json.dumps(leftovers, indent=1)[:3000]


# Every combination's own suite, in its image's test stage (GPU ones on the CPU fallback).
# Combinations that share a build context share the run.
@pytest.mark.parametrize("combination", ALL, ids=lambda c: c.id)
def test_generated_tests_pass_in_the_image(combination: Combination, builds):
    builds.run_tests(combination)
