"""Compiled builds of the HTTP proxy's hot modules (mypyc) and the import hook that loads them.

The proxy's per-request work is Python: httptools' callbacks, the policy verdict cache, the access-log
records. mypyc (part of mypy) compiles the same type-annotated modules to C extension modules, which
halves that cost. The Python source stays the one source of truth:

* ``python -m hubblepy.native build`` (``scripts/bootstrap.sh`` runs it) compiles :data:`GROUP` into
  ``build/native/`` beside the package, with a ``manifest.json`` holding each source's SHA-256;
* :func:`install` (run by ``hubblepy.proxy``'s ``__init__``) puts a finder first on ``sys.meta_path``
  that loads the compiled modules only if the build is for this interpreter and **every** source of the
  group is unchanged since it was built. Otherwise, or with ``HUBBLEPY_NATIVE=0``, the Python source is
  imported as if there were no build (an edited module never runs from a stale build).

``HUBBLEPY_NATIVE_DIR`` names another build folder. ``python -m hubblepy.native status`` says which
build a new process would load.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

GROUP = ("hubblepy.proxy.http", "hubblepy.proxy.accesslog")
GROUP_NAME = "hubblepy_proxy"  # the shared library is the top-level module ``hubblepy_proxy__mypyc``
PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # holds hubblepy/
MANIFEST = "manifest.json"


class NativeBuildError(Exception):
    """The compiled build could not be made."""


def build_dir() -> Path:
    return Path(os.environ.get("HUBBLEPY_NATIVE_DIR") or PACKAGE_ROOT / "build" / "native")


def source_path(module: str) -> Path:
    return PACKAGE_ROOT.joinpath(*module.split(".")).with_suffix(".py")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _interpreter() -> str:
    return f"{sys.implementation.cache_tag} {importlib.machinery.EXTENSION_SUFFIXES[0]}"


def stale_reason(folder: Path | None = None) -> str | None:
    """Why the build in ``folder`` would not be loaded, or None if it would."""
    return _fresh_manifest(folder or build_dir())[1]


def _fresh_manifest(folder: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The manifest of the build in ``folder`` if that build would be loaded, else why not."""
    try:
        manifest = json.loads((folder / MANIFEST).read_bytes())
    except FileNotFoundError:
        return None, f"no build in {folder} (python -m hubblepy.native build)"
    except (OSError, ValueError) as exc:
        return None, f"unreadable manifest in {folder}: {exc}"
    if manifest.get("interpreter") != _interpreter():
        return None, f"built for {manifest.get('interpreter')!r}, this is {_interpreter()!r}"
    modules = manifest.get("modules", {})
    for module in GROUP:
        entry = modules.get(module)
        if entry is None:
            return None, f"{module} is not in the build"
        try:
            if _digest(source_path(module)) != entry["sha256"]:
                return None, f"{source_path(module)} changed since the build"
        except OSError as exc:
            return None, f"{module}: {exc}"
        if not (folder / entry["file"]).is_file():
            return None, f"{folder / entry['file']} is missing"
    if not (folder / manifest.get("shared", {}).get("file", "")).is_file():
        return None, "the build's shared library is missing"
    return manifest, None


class _NativeFinder(importlib.abc.MetaPathFinder):
    """Answers for the compiled group's modules (and its shared library) with their extension files."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.files = files

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        file = self.files.get(fullname)
        if file is None:
            return None
        loader = importlib.machinery.ExtensionFileLoader(fullname, str(file))
        return importlib.util.spec_from_file_location(fullname, str(file), loader=loader)


def install() -> bool:
    """Loads the compiled group from now on if its build is fresh; True if it will."""
    if os.environ.get("HUBBLEPY_NATIVE", "1") == "0":
        return False
    if any(isinstance(finder, _NativeFinder) for finder in sys.meta_path):
        return True
    folder = build_dir()
    manifest, _ = _fresh_manifest(folder)
    if manifest is None:
        return False
    files = {name: folder / entry["file"] for name, entry in manifest["modules"].items()}
    files[manifest["shared"]["module"]] = folder / manifest["shared"]["file"]
    sys.meta_path.insert(0, _NativeFinder(files))
    return True


def is_compiled(module: ModuleType) -> bool:
    """Whether ``module`` was loaded from a compiled extension (not its Python source)."""
    return isinstance(getattr(module, "__loader__", None), importlib.machinery.ExtensionFileLoader)


def build(folder: Path | None = None, quiet: bool = True) -> Path:
    """Compiles :data:`GROUP` with mypyc into ``folder`` (replaced whole, only once the build worked)."""
    folder = folder or build_dir()
    try:
        from mypyc.build import mypycify
        from setuptools import Distribution  # type: ignore[import-untyped]
    except ImportError as exc:
        raise NativeBuildError(f"mypyc (pip install mypy) and setuptools are needed: {exc}") from exc
    digests = {module: _digest(source_path(module)) for module in GROUP}
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    work = Path(tempfile.mkdtemp(prefix="hubblepy-native-"))
    cwd = os.getcwd()
    try:
        os.chdir(PACKAGE_ROOT)  # mypy reads the project's own settings (pyproject.toml) from here
        sources = [str(source_path(module).relative_to(PACKAGE_ROOT)) for module in GROUP]
        with _output_to(work / "build.log" if quiet else None):
            extensions = mypycify(
                sources, opt_level="3", debug_level="0", target_dir=str(work / "c"), group_name=GROUP_NAME
            )
            dist = Distribution({"name": "hubblepy-native", "ext_modules": extensions})
            command = dist.get_command_obj("build_ext")
            command.build_lib = str(staging)
            command.build_temp = str(work / "o")
            dist.run_command("build_ext")
    except (SystemExit, Exception) as exc:
        log = work / "build.log"
        tail = log.read_text(errors="replace")[-4000:] if log.exists() else ""
        shutil.rmtree(staging, ignore_errors=True)
        raise NativeBuildError(f"mypyc build failed: {exc}\n{tail}") from exc
    finally:
        os.chdir(cwd)
        shutil.rmtree(work, ignore_errors=True)
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    modules = {
        module: {"sha256": digests[module], "file": module.replace(".", "/") + suffix} for module in GROUP
    }
    shared = {"module": f"{GROUP_NAME}__mypyc", "file": f"{GROUP_NAME}__mypyc{suffix}"}
    for entry in (*modules.values(), shared):
        if not (staging / entry["file"]).is_file():
            shutil.rmtree(staging, ignore_errors=True)
            raise NativeBuildError(f"mypyc build made no {entry['file']}")
    manifest = {"interpreter": _interpreter(), "modules": modules, "shared": shared}
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    staging.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


@contextlib.contextmanager
def _output_to(path: Path | None) -> Iterator[None]:
    """Sends this process's stdout and stderr (file descriptors: the C compiler's too) to ``path``."""
    if path is None:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for saved_fd in saved:
            os.close(saved_fd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hubblepy.native", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["build", "status"])
    parser.add_argument("--if-stale", action="store_true", help="build only if the current build is stale")
    parser.add_argument("--verbose", action="store_true", help="show mypy's and the compiler's output")
    args = parser.parse_args(argv)
    reason = stale_reason()
    if args.command == "status":
        print(f"compiled: {build_dir()}" if reason is None else f"Python source: {reason}")
        return 0
    if args.if_stale and reason is None:
        return 0
    try:
        folder = build(quiet=not args.verbose)
    except NativeBuildError as exc:
        print(f"hubblepy.native: {exc}", file=sys.stderr)
        return 1
    print(f"compiled {', '.join(GROUP)} into {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
