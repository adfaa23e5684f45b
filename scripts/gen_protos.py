#!/usr/bin/env python3
"""Regenerate hubblepy/api (protobuf + gRPC Python code) from proto/.

Usage:
    python scripts/gen_protos.py           # rewrite hubblepy/api in place
    python scripts/gen_protos.py --check   # exit 1 and list stale files if out of date

Runs grpc_tools.protoc with proto/ as include root, so the descriptor pool
registers the files as "flow/flow.proto", "observer/observer.proto", ... (as
upstream does). protoc emits top-level imports such as ``from flow import
flow_pb2``; these are rewritten into package imports under ``hubblepy.api``.
The output depends only on the .proto files and the grpcio-tools version.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = REPO_ROOT / "proto"
API_ROOT = REPO_ROOT / "hubblepy" / "api"
API_PACKAGE = "hubblepy.api"

# Proto package name == folder name == module stem, as in upstream.
PROTO_PACKAGES = ("flow", "observer", "peer", "relay")
GRPC_PACKAGES = frozenset({"observer", "peer"})

_PKG_ALT = "|".join(PROTO_PACKAGES)
_IMPORT_MODULE = re.compile(rf"^from ({_PKG_ALT}) import (\w+_pb2\w*)", re.MULTILINE)
_IMPORT_FROM_MODULE = re.compile(rf"^from ({_PKG_ALT})\.(\w+_pb2\w*) import", re.MULTILINE)
_BUILDER_MODULE_NAME = re.compile(rf"(BuildTopDescriptorsAndMessages\(DESCRIPTOR, ')(({_PKG_ALT})\.\w+_pb2)'")

_ROOT_INIT = '''"""Generated protobuf and gRPC modules of the Hubble API (do not edit).

Regenerate with ``python scripts/gen_protos.py``; sources are in proto/.
Generated with grpcio-tools {tools_version}.
"""
'''
_PACKAGE_INIT = '"""Generated code for proto package `{package}` (see proto/{package}/)."""\n'


class GenerationError(Exception):
    """protoc failed or produced unexpected output."""


def grpc_tools_version() -> str:
    return importlib.metadata.version("grpcio-tools")


def _rewrite_imports(text: str) -> str:
    text = _IMPORT_MODULE.sub(rf"from {API_PACKAGE}.\1 import \2", text)
    text = _IMPORT_FROM_MODULE.sub(rf"from {API_PACKAGE}.\1.\2 import", text)
    return _BUILDER_MODULE_NAME.sub(rf"\g<1>{API_PACKAGE}.\2'", text)


def _run_protoc(out_dir: Path) -> None:
    from grpc_tools import protoc  # imported late: only needed when generating

    well_known = Path(protoc.__file__).parent / "_proto"
    sources = [f"{pkg}/{pkg}.proto" for pkg in PROTO_PACKAGES]
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        "-I.",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *sources,
    ]
    result = subprocess.run(cmd, cwd=PROTO_ROOT, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise GenerationError(f"protoc failed: {result.stderr.strip() or result.stdout.strip()}")


def generate(dest: Path) -> dict[str, str]:
    """Generate the complete hubblepy/api tree; return {relative path: text}."""
    files: dict[str, str] = {"__init__.py": _ROOT_INIT.format(tools_version=grpc_tools_version())}
    with tempfile.TemporaryDirectory(prefix="hubblepy-protoc-") as tmp:
        raw = Path(tmp)
        _run_protoc(raw)
        for pkg in PROTO_PACKAGES:
            files[f"{pkg}/__init__.py"] = _PACKAGE_INIT.format(package=pkg)
            wanted = [f"{pkg}_pb2.py", f"{pkg}_pb2.pyi"]
            if pkg in GRPC_PACKAGES:
                wanted.append(f"{pkg}_pb2_grpc.py")
            for name in wanted:
                path = raw / pkg / name
                if not path.is_file():
                    raise GenerationError(f"protoc did not produce {pkg}/{name}")
                files[f"{pkg}/{name}"] = _rewrite_imports(path.read_text(encoding="utf-8"))
    for rel, text in files.items():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return files


def _checked_in_files(root: Path) -> set[str]:
    """Generated-looking files currently under hubblepy/api."""
    found = set()
    for path in root.rglob("*"):
        if path.is_file() and path.suffix in (".py", ".pyi") and "__pycache__" not in path.parts:
            found.add(path.relative_to(root).as_posix())
    return found


def find_stale(fresh: dict[str, str], root: Path = API_ROOT) -> list[str]:
    """Return sorted relative paths that differ between `fresh` and the tree at `root`."""
    stale = []
    for rel, text in fresh.items():
        target = root / rel
        if not target.is_file() or target.read_text(encoding="utf-8") != text:
            stale.append(rel)
    stale.extend(sorted(_checked_in_files(root) - fresh.keys()))
    return sorted(stale)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="regenerate into a temporary directory and fail if hubblepy/api differs",
    )
    args = parser.parse_args(argv)
    try:
        with tempfile.TemporaryDirectory(prefix="hubblepy-api-") as tmp:
            fresh = generate(Path(tmp))
    except (GenerationError, ModuleNotFoundError, importlib.metadata.PackageNotFoundError) as exc:
        print(f"gen_protos: {exc}", file=sys.stderr)
        return 2

    stale = find_stale(fresh)
    if args.check:
        if stale:
            print(
                f"gen_protos: generated code is stale (grpcio-tools {grpc_tools_version()}); "
                "run `python scripts/gen_protos.py`:",
                file=sys.stderr,
            )
            for rel in stale:
                print(f"  hubblepy/api/{rel}", file=sys.stderr)
            return 1
        print(f"gen_protos: hubblepy/api is up to date ({len(fresh)} files)")
        return 0

    for rel in stale:
        target = API_ROOT / rel
        if rel in fresh:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(fresh[rel], encoding="utf-8")
        else:
            target.unlink()
    print(f"gen_protos: wrote {len(stale)} of {len(fresh)} files under hubblepy/api")
    return 0


if __name__ == "__main__":
    sys.exit(main())
