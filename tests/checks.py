"""File checks for a rendered project: what any generated file must satisfy."""

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

BIN = Path(sys.executable).parent
# What a generated file may legitimately hold that looks like Jinja: GitHub
# Actions expressions and docker/metadata-action's tag patterns.
NOT_JINJA = re.compile(r"\$\{\{.*?\}\}|\{\{(version|major|minor|patch|sha|branch)\}\}")
JINJA_MARKERS = ("{{", "{%", "{#")


def _digest(*parts: bytes) -> str:
    return hashlib.sha256(b"\0".join(parts)).hexdigest()


def text_of(path: Path) -> str | None:
    try:
        return path.read_text()
    except UnicodeDecodeError:
        return None  # a model artifact


_sound_files: set[str] = set()


def check_file(path: Path, root: Path) -> None:
    """Non-empty, no template leftovers, no whitespace debris, and it parses. A file with
    the same name and bytes as one already found sound (most are, across 1,200 renders)
    is not checked again."""
    key = _digest(str(path.relative_to(root)).encode(), path.read_bytes())
    if key not in _sound_files:
        _check_file(path, root)
        _sound_files.add(key)


def _check_file(path: Path, root: Path) -> None:
    name = path.relative_to(root)
    assert path.stat().st_size > 0, f"{name} is empty"
    assert path.suffix != ".rej", f"{name} is a rejected update hunk"
    text = text_of(path)
    if text is None or (name.parts[0] == "model" and path.suffix != ".json"):
        return  # a model artifact, as its library wrote it (LightGBM's text: blank lines)
    leftover = [m for m in JINJA_MARKERS if m in NOT_JINJA.sub("", text)]
    assert not leftover, f"{name} holds template markers {leftover}"
    assert text.endswith("\n") and not text.endswith("\n\n"), f"{name}: not one final newline"
    lines = text.split("\n")
    trailing = [n for n, line in enumerate(lines, 1) if line != line.rstrip()]
    assert not trailing, f"{name}: trailing whitespace on lines {trailing}"
    # Python keeps two blank lines between top-level definitions; nothing needs three.
    most_blank = 2 if path.suffix == ".py" else 1
    run = 0
    for number, line in enumerate(lines, 1):
        run = run + 1 if not line.strip() else 0
        assert run <= most_blank, f"{name}:{number}: {run} blank lines in a row"
    if path.suffix in (".yaml", ".yml"):
        list(yaml.safe_load_all(text))
    elif path.suffix == ".json":
        json.loads(text)
    elif path.suffix == ".py":
        compile(text, str(name), "exec")


_lint_results: dict[str, str] = {}


def _once(key: str, lint) -> str:
    if key not in _lint_results:
        _lint_results[key] = lint()
    return _lint_results[key]


def _findings(command: list, cwd: Path) -> str:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    return result.stdout + result.stderr if result.returncode else ""


def hadolint(project: Path) -> str:
    """hadolint's findings on the Dockerfile ('' when clean); identical inputs are linted once."""
    inputs = [project / "Dockerfile", project / ".hadolint.yaml"]
    key = "hadolint" + _digest(*(p.read_bytes() for p in inputs if p.exists()))
    return _once(key, lambda: _findings([BIN / "hadolint", "Dockerfile"], project))


def ruff(project: Path) -> str:
    """ruff check and format --check findings ('' when clean), once per distinct source set."""
    sources = sorted(project.rglob("*.py")) + [project / "pyproject.toml"]
    key = "ruff" + _digest(
        *(str(p.relative_to(project)).encode() + p.read_bytes() for p in sources)
    )
    return _once(
        key,
        lambda: (
            _findings([BIN / "ruff", "check", "--no-cache", "."], project)
            + _findings([BIN / "ruff", "format", "--check", "--diff", "--no-cache", "."], project)
        ),
    )


def renovate_config(project: Path) -> str:
    """Renovate's schema on .github/renovate.json ('' when valid), once per distinct file."""
    config = project / ".github" / "renovate.json"
    schema = ["--builtin-schema", "vendor.renovate"]
    return _once(
        "renovate" + _digest(config.read_bytes()),
        lambda: _findings([BIN / "check-jsonschema", *schema, str(config)], project),
    )


def workflows(project: Path) -> str:
    """zizmor (offline), actionlint and GitHub's workflow schema on .github/workflows/ ('' when
    clean), once per distinct set of workflow files."""
    files = sorted((project / ".github" / "workflows").glob("*.yaml"))
    key = "workflows" + _digest(*(p.name.encode() + p.read_bytes() for p in files))
    names = [str(p.relative_to(project)) for p in files]
    schema = ["--builtin-schema", "vendor.github-workflows"]
    return _once(
        key,
        lambda: (
            _findings([BIN / "zizmor", "--offline", "--quiet", *names], project)
            + _findings([BIN / "actionlint", *names], project)
            + _findings([BIN / "check-jsonschema", *schema, *names], project)
        ),
    )
