"""The multi-process reader prints exactly what the one-process reader prints, warnings included."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest
from hubbletest import clean_env, run_hubble

from hubblepy.cli.file_input import MAX_LINE_BYTES

SEQUENTIAL = {"HUBBLEPY_WORKERS": "1"}
PARALLEL = {"HUBBLEPY_PARALLEL_MIN_BYTES": "0", "HUBBLEPY_PARALLEL_BLOCK_BYTES": "3000"}


def _stderr_lines(stderr: bytes) -> list[str]:
    # Warnings carry the wall-clock time; compare what follows it.
    return [re.sub(r"^time=\S+ ", "", line) for line in stderr.decode().splitlines()]


def _run(path: Path, args: list[str], env: dict[str, str]):
    return run_hubble(["observe", "--input-file", str(path), *args], env=clean_env() | env)


@pytest.fixture
def mixed_input(tmp_path: Path, fixtures_dir: Path) -> Path:
    """Fixture flows with malformed lines, unknown fields and CRLF spread over many blocks."""
    lines = (fixtures_dir / "flows.jsonl").read_bytes().splitlines()
    out = []
    for index, line in enumerate(lines * 2):
        if index in (17, 250, 333):  # warnings in late blocks: their line numbers count every block
            out.append(b"not json")
        if index in (40, 130, 300):  # first one warns once; later ones decode leniently, silently
            record = orjson.loads(line)
            record["flow"]["newThing"] = index
            line = orjson.dumps(record)
        if index == 77:
            out.append(b"")
        if index == 201:
            line += b"\r"
        out.append(line)
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(out) + b"\n")
    return path


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["-o", "json"],
        ["--namespace", "payments"],
        ["--verdict", "DROPPED", "-o", "json"],
        ["--print-node-name"],
    ],
)
def test_same_output_as_one_process(mixed_input: Path, args: list[str]) -> None:
    one = _run(mixed_input, args, SEQUENTIAL)
    many = _run(mixed_input, args, PARALLEL)
    assert one.returncode == many.returncode == 0
    assert many.stdout == one.stdout
    assert _stderr_lines(many.stderr) == _stderr_lines(one.stderr)
    warnings = _stderr_lines(one.stderr)
    assert sum("Failed to unmarshal" in w for w in warnings) == 4
    if not any(arg.startswith("--") and arg != "--print-node-name" for arg in args):
        # Without filters every line is decoded: exactly one unknown-field warning for the run.
        assert sum("unknown field detected" in w for w in warnings) == 1


def test_a_line_too_long_stops_both_the_same_way(tmp_path: Path, fixtures_dir: Path) -> None:
    lines = (fixtures_dir / "flows.jsonl").read_bytes().splitlines()
    body = lines[:50] + [b"{" + b" " * MAX_LINE_BYTES + b"}"] + lines[50:]
    path = tmp_path / "long.jsonl"
    path.write_bytes(b"\n".join(body) + b"\n")
    one = _run(path, [], SEQUENTIAL)
    many = _run(path, [], PARALLEL)
    assert one.returncode == many.returncode == 1
    assert many.stdout == one.stdout and one.stdout.count(b"\n") == 50
    assert many.stderr == one.stderr == b"bufio.Scanner: token too long\n"
