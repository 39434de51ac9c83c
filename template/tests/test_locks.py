"""The lock files are what scripts/lock.py makes of the requirements.

The image installs requirements/*.lock, never the .txt files: a pin edited in a .txt file
and not locked again would silently not ship. These checks need neither uv nor a network.
"""

import re
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LOCK_SCRIPT = runpy.run_path(str(ROOT / "scripts" / "lock.py"))
LAYERS: dict[str, list[str]] = LOCK_SCRIPT["LAYERS"]
ENTRY = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;\\]+)")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(layer: str) -> dict[str, str]:
    """{package: version} of requirements/LAYER.txt."""
    found = {}
    for line in (ROOT / "requirements" / f"{layer}.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            match = ENTRY.match(line)
            assert match, f"requirements/{layer}.txt: '{line}' is not pinned with =="
            found[normalize(match[1])] = match[3]
    return found


def locked(layer: str) -> tuple[str, dict[str, dict]]:
    """The command in requirements/LAYER.lock's header, and {package: entry} of its body
    (entry: version, hashes, and what it is locked for)."""
    return read_lock(ROOT / "requirements" / f"{layer}.lock")


def read_lock(lock: Path) -> tuple[str, dict[str, dict]]:
    header, entries, entry = "", {}, None
    for line in lock.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#    uv pip compile") and not entries:
            header = stripped.removeprefix("#").strip()
        elif match := ENTRY.match(line):
            entry = entries.setdefault(normalize(match[1]), {"versions": set(), "hashes": 0})
            entry["versions"].add(match[3])
            entry.setdefault("via", set())
        elif entry is not None and stripped.startswith("--hash=sha256:"):
            entry["hashes"] += 1
        elif entry is not None and stripped.startswith("#"):
            entry["via"].add(stripped.removeprefix("#").strip().removeprefix("via").strip())
    return header, entries


@pytest.mark.parametrize("layer", LAYERS)
def test_the_lock_is_made_by_the_lock_script(layer):
    header, _ = locked(layer)
    # Renovate relocks by running this header: it must be the script's command.
    assert header == " ".join(LOCK_SCRIPT["command"](layer)), (
        f"requirements/{layer}.lock was not made by scripts/lock.py: run it again"
    )


@pytest.mark.parametrize("layer", LAYERS)
def test_every_pin_is_locked_at_its_version(layer):
    # A layer's lock holds the pins of its own .txt and of the layers below it.
    _, entries = locked(layer)
    for source in [*LAYERS[layer], layer]:
        for package, version in pins(source).items():
            stale = f"run scripts/lock.py: {source}.txt pins {package}=={version}, {layer}.lock has"
            assert package in entries, f"{stale} no {package}"
            assert entries[package]["versions"] == {version}, (
                f"{stale} {sorted(entries[package]['versions'])}"
            )
            assert f"-r requirements/{source}.txt" in entries[package]["via"]


@pytest.mark.parametrize("layer", LAYERS)
def test_every_locked_package_has_hashes(layer):
    _, entries = locked(layer)
    assert entries, f"{layer}.lock locks nothing"
    unhashed = sorted(package for package, entry in entries.items() if not entry["hashes"])
    assert not unhashed, f"{layer}.lock has no hashes for {unhashed}"


def test_a_package_in_several_layers_has_one_version():
    # One lock may hold a package twice, under exclusive markers, where a release needs a
    # newer Python than the lowest one locked for; every layer holding it must agree.
    versions: dict[str, dict[str, list[str]]] = {}
    for layer in LAYERS:
        for package, entry in locked(layer)[1].items():
            versions.setdefault(package, {})[layer] = sorted(entry["versions"])
    split = {
        package: by_layer
        for package, by_layer in versions.items()
        if len({tuple(found) for found in by_layer.values()}) > 1
    }
    assert not split, f"locked at different versions in different layers: {split}"


def test_the_web_stack_lock_is_serving_less_ml(tmp_path, capsys):
    # The Dockerfile installs the web stack apart from the ML framework, from this
    # difference: each of serving.lock's own packages, at its version, with every hash.
    lock_difference = runpy.run_path(str(ROOT / "scripts" / "lock_difference.py"))
    requirements = ROOT / "requirements"
    lock_difference["main"](requirements / "serving.lock", requirements / "ml.lock")
    difference = tmp_path / "web-stack.lock"
    difference.write_text(capsys.readouterr().out)
    _, serving = locked("serving")
    _, ml = locked("ml")
    _, web_stack = read_lock(difference)
    assert web_stack, "the web stack is empty"
    assert web_stack.keys() == serving.keys() - ml.keys()
    for package, entry in web_stack.items():
        assert entry["versions"] == serving[package]["versions"], package
        assert entry["hashes"] == serving[package]["hashes"], package
