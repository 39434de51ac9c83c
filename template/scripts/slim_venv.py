"""Slim the packages a Dockerfile step just installed into /opt/venv, keeping what runs.

    pip install --report REPORT ... && python scripts/slim_venv.py --tools ROOT --report REPORT

Each dependency layer runs this right after its pip install, in the same step, so no
layer ever holds the bytes it removes. It looks only at the files of the distributions
pip's report says the step installed: the layers below are slim already, and a file of
theirs that changed would be copied whole into this layer. (Looking through the whole
venv again took a serving layer 9 s of its 16 on top of ONNX Runtime.) From those files it drops

- the libraries' own test suites, and what only compiling against a library needs
  (C headers and sources, Cython declarations, static libraries, type stubs), but for the
  packages in KEEP_BUILD_FILES, which read theirs at run time;
- the symbol tables of compiled libraries, which only debuggers read: binutils' strip
  --strip-unneeded, run from ROOT, a filesystem where it is installed (the Dockerfile's
  build-tools stage, mounted for the step), so the image never holds binutils. A stripped
  copy that would not load is not used: binutils before 2.41 (Debian 12) misplaces the
  segments of some libraries that auditwheel's patchelf rewrote;
- the second copy of a library that two wheels both vendor (numpy.libs and scipy.libs hold
  the same libgfortran), made one file with two names.

Every module's bytecode is written to __pycache__ (pip installs with --no-compile, and a
read-only root could not cache it: every start would compile the libraries again, in
memory). The Python sources stay: every library frame of a production traceback shows
its line, and inspect.getsource works (dropping them saved 7.6 MB of a pull).
"""

import argparse
import compileall
import filecmp
import functools
import json
import os
import re
import shutil
import struct
import subprocess
import sysconfig
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from importlib import metadata
from pathlib import Path

SITE_PACKAGES = Path(sysconfig.get_path("purelib"))
# Files only a compiler or a type checker reads.
BUILD_ONLY = re.compile(r".*\.(pyi|pxd|pxi|pyx|tp|h|hpp|c|cc|cpp|a)$|py\.typed$")
LIBRARY = re.compile(r".*\.so(\..*)?$")  # libx.so, libx.so.13, libx.so.23.0git
# Packages that read their build files at run time: Triton compiles its launcher from
# driver.c and CUDA's headers the first time torch.compile runs a kernel (with a C
# compiler, which the runtime image does not have: docs/building.md says so).
KEEP_BUILD_FILES = {"triton"}


def installed_files(report: Path) -> list[Path]:
    """The files under site-packages of every distribution pip's report says it installed."""
    names = [item["metadata"]["name"] for item in json.loads(report.read_text())["install"]]
    files = []
    for name in names:
        for file in metadata.distribution(name).files or ():
            path = Path(os.path.normpath(SITE_PACKAGES / file))
            if path.is_relative_to(SITE_PACKAGES) and path.is_file():
                files.append(path)
    return files


def remove_build_only_files(files: list[Path]) -> list[Path]:
    """Removes the test suites and build-only files among `files`; returns the rest."""
    kept = [SITE_PACKAGES / package for package in KEEP_BUILD_FILES]
    removed = set()
    for path in files:
        # A test suite is a tests/ folder inside a package, as `*/**/tests` would find it.
        inside = path.relative_to(SITE_PACKAGES).parts[1:-1]
        if "tests" in inside or (
            BUILD_ONLY.match(path.name) and not any(path.is_relative_to(k) for k in kept)
        ):
            path.unlink()
            removed.add(path)
    folders = {folder for path in removed for folder in path.parents}
    for folder in sorted(folders, key=lambda folder: -len(folder.parts)):
        inside = folder.is_relative_to(SITE_PACKAGES) and folder != SITE_PACKAGES
        if inside and not any(folder.iterdir()):
            folder.rmdir()  # the folders the test suites leave empty, deepest first
    return [path for path in files if path not in removed]


def compile_bytecode(files: list[Path]) -> None:
    """Bytecode in __pycache__, as pip would write it, for every module installed."""
    modules = [path for path in files if path.suffix == ".py"]
    with ProcessPoolExecutor() as pool:  # compiling holds the GIL: a process per core
        list(pool.map(functools.partial(compileall.compile_file, quiet=1), modules, chunksize=64))


SHT_SYMTAB, PT_LOAD = 2, 1


def read_elf(path: Path) -> tuple[list[int], list[tuple[int, ...]]] | None:
    """An ELF file's section types and segments (type, offset, address, size, alignment)."""
    with path.open("rb") as elf:
        ident = elf.read(16)
        if ident[:4] != b"\x7fELF":
            return None
        order, wide = "<" if ident[5] == 1 else ">", ident[4] == 2
        word = "Q" if wide else "I"
        header = struct.unpack(f"{order}HHI{word * 3}IHHHHHH", elf.read(48 if wide else 36))
        segments_at, sections_at = header[4], header[5]
        segment_size, segment_count, section_size, section_count = header[8:12]
        sections = []
        for i in range(section_count):
            elf.seek(sections_at + i * section_size + 4)  # sh_type follows sh_name
            sections.append(struct.unpack(order + "I", elf.read(4))[0])
        segments = []
        layout = order + ("IIQQQQQQ" if wide else "IIIIIIII")
        for i in range(segment_count):
            elf.seek(segments_at + i * segment_size)
            fields = struct.unpack(layout, elf.read(struct.calcsize(layout)))
            # 64-bit: type, flags, offset, address, ...; 32-bit: type, offset, address, ...
            kind, offset, address, _, file_size = (
                (fields[0], *fields[2:4], *fields[4:6]) if wide else fields[:5]
            )
            segments.append((kind, offset, address, file_size, fields[7]))
        return sections, segments


def has_symbol_table(path: Path) -> bool:
    return (elf := read_elf(path)) is not None and SHT_SYMTAB in elf[0]


def loads(path: Path) -> bool:
    """Whether the dynamic loader would map every segment: glibc refuses one whose offset
    and address disagree modulo its alignment, or that runs past the end of the file."""
    if (elf := read_elf(path)) is None:
        return False
    size = path.stat().st_size
    return all(
        kind != PT_LOAD
        or ((align <= 1 or (address - offset) % align == 0) and offset + file_size <= size)
        for kind, offset, address, file_size, align in elf[1]
    )


def strip_one(strip: list[str], environment: dict, path: Path) -> Path | None:
    """Strips a library in place; returns it when strip's copy would not load (kept)."""
    stripped = path.with_name(path.name + ".stripped")
    command = [*strip, "-o", str(stripped), str(path)]
    subprocess.run(command, check=True, env=environment)  # noqa: S603
    if loads(stripped):
        shutil.copymode(path, stripped)
        stripped.replace(path)
        return None
    stripped.unlink()
    return path


def strip_libraries(tools: Path, files: list[Path]) -> None:
    unstripped = [
        path
        for path in files
        if LIBRARY.match(path.name) and not path.is_symlink() and has_symbol_table(path)
    ]
    # strip runs on the libraries it was installed with, from under ROOT.
    libraries = ":".join(str(lib) for lib in (tools / "usr/lib").glob("*-linux-gnu*"))
    environment = {**os.environ, "LD_LIBRARY_PATH": libraries}
    strip = [str(tools / "usr/bin/strip"), "--strip-unneeded"]
    with ThreadPoolExecutor() as pool:
        kept = pool.map(lambda path: strip_one(strip, environment, path), unstripped)
        for path in filter(None, kept):
            print(f"slim_venv: {path.name} keeps its symbols: strip's copy would not load")


def link_vendored_copies(files: list[Path]) -> None:
    """auditwheel names a vendored library by its hash, so equal names are equal files.
    Only this step's copies are linked: a link to a lower layer's file would copy it up."""
    first: dict[str, Path] = {}
    for path in sorted(
        p for p in files if p.parent.parent == SITE_PACKAGES and p.parent.suffix == ".libs"
    ):
        kept = first.setdefault(path.name, path)
        if kept != path and not kept.samefile(path) and filecmp.cmp(kept, path, shallow=False):
            link = path.with_name(path.name + ".link")
            os.link(kept, link)
            link.replace(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tools", type=Path, required=True, help="a root where binutils is")
    parser.add_argument("--report", type=Path, required=True, help="pip install's --report")
    args = parser.parse_args()
    files = remove_build_only_files(installed_files(args.report))
    compile_bytecode(files)
    strip_libraries(args.tools, files)
    link_vendored_copies(files)


if __name__ == "__main__":
    main()
