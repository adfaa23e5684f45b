"""Start-up: the short commands load only what they need (the time itself is benchmarks/bench_cli.py's)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hubbletest import clean_env

from hubblepy.sample.path import sample_capture_path

# Heavy packages that `hubble observe --input-file` and `hubble version` never need.
NEVER = (
    "grpc",
    "typer",
    "rich",
    "yaml",
    "multiprocessing",
    "hubblepy.parser.flows",
    "hubblepy.cli.live",
    "jq",
)

PROBE = """
import json, sys
from hubblepy.cli.app import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
sys.stdout.flush()
sys.stderr.write(json.dumps(sorted(sys.modules)))
"""


def _modules(*args: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, env=clean_env(), timeout=60, check=True
    )
    assert out.stdout, out.stderr
    return set(json.loads(out.stderr.decode().splitlines()[-1]))


def _loaded(modules: set[str], name: str) -> bool:
    return name in modules or any(m.startswith(name + ".") for m in modules)


@pytest.mark.parametrize(
    "args",
    [
        ["version"],
        ["observe", "--input-file", sample_capture_path()],
        ["observe", "--input-file", sample_capture_path(), "-o", "json"],
    ],
    ids=["version", "observe-compact", "observe-json"],
)
def test_short_commands_do_not_load_heavy_packages(args):
    modules = _modules(*args)
    assert [name for name in NEVER if _loaded(modules, name)] == []
    if args == ["version"]:
        assert not _loaded(modules, "hubblepy.codec")


def test_filters_load_their_compiler_only_when_given():
    plain = _modules("observe", "--input-file", sample_capture_path())
    filtered = _modules("observe", "--input-file", sample_capture_path(), "--verdict", "DROPPED")
    assert "hubblepy.filters.compiler" not in plain and "hubblepy.filters.compiler" in filtered
    assert not _loaded(filtered, "grpc") and not _loaded(filtered, "typer")
