"""The shell examples of README.md and docs/ that run on the shipped sample are run, as a user would.

An example is marked with an HTML comment right before its fenced block (or table)::

    <!-- docs-test: sample -->      the block reads the shipped sample (also ./flows.json)
    <!-- docs-test: live -->        the block talks to a server: HUBBLE_SERVER is a real `hubble agent`
                                    replaying the shipped sample (it also has ./flows.json)
    <!-- docs-test: sample, exit 1 -->  the commands fail: exit status 1, output as documented
    <!-- docs-test: pci-sample -->  the block reads ./flows.json, a copy of the pci-cde sample (namespace
                                    ``cde``, egress by DNS name, DNS flows, drops to the world)

Commands run with bash (``set -o pipefail``) in an empty directory holding ``flows.json`` (a copy of
the sample), with this checkout's ``hubble`` and ``python`` first on PATH and no HUBBLE_* settings.
A block with ``$ `` prompts runs each prompted command (continuation lines included); one without
prompts runs each command line (continued by a final ``\\`` or an open quote), comments skipped, with
the block's variable assignments (``NAME=...``) before it. The commands of a block run in order in
one directory. Each must exit 0 and print something on stdout, unless its output goes to a file
(``> FILE``). In a marked table, every cell of code that starts with ``hubble `` is a command. Examples that need
the lab's egress to the world, DNS names or namespace ``cde`` run on the pci-cde sample.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from hubbletest import REPO_ROOT, clean_env

from hubblepy.api.observer import observer_pb2, observer_pb2_grpc
from hubblepy.sample.path import sample_capture_path

if "liveprocs" not in sys.modules:
    _spec = importlib.util.spec_from_file_location(
        "liveprocs", REPO_ROOT / "tests" / "observer" / "liveprocs.py"
    )
    assert _spec is not None and _spec.loader is not None
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["liveprocs"] = _module
    _spec.loader.exec_module(_module)
liveprocs = sys.modules["liveprocs"]

MARKER = re.compile(r"<!--\s*docs-test:\s*(?P<args>[^>]*?)\s*-->\s*\n(?:\s*\n)*")
FENCE = re.compile(r"```[^\n]*\n(?P<body>.*?)```", re.S)
TABLE = re.compile(r"(?:^\|.*\n)+", re.M)
KINDS = ("sample", "live", "pci-sample")


@dataclass
class Command:
    """One command of a marked block."""

    text: str
    documented: str | None = None  # the output the docs show (prompt blocks only)
    setup: str = ""  # the block's variable assignments before it


@dataclass
class Example:
    """A marked block: its commands run in order, in one directory."""

    where: str  # file:line
    kind: str  # sample | live
    commands: list[Command]
    exit_status: int = 0


def _doc_files() -> list[Path]:
    return [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").rglob("*.md"))]


def _parse_marker(args: str, where: str) -> tuple[str, int]:
    words = [w.strip() for w in args.split(",")]
    kind = words[0]
    if kind not in KINDS:
        raise ValueError(f"{where}: unknown docs-test kind {kind!r} ({', '.join(KINDS)})")
    exit_status = 0
    for word in words[1:]:
        match = re.fullmatch(r"exit (\d+)", word)
        if match is None:
            raise ValueError(f"{where}: unknown docs-test option {word!r}")
        exit_status = int(match.group(1))
    return kind, exit_status


def _continued(lines: list[str]) -> bool:
    """Whether a command goes on: a final backslash, or an open single quote."""
    return lines[-1].endswith("\\") or "\n".join(lines).count("'") % 2 == 1


def _prompt_commands(body: str) -> list[tuple[str, str]]:
    """(command, documented output) for each ``$ `` prompt of a block."""
    found: list[tuple[str, str]] = []
    lines = body.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if not line.startswith("$ "):
            index += 1
            continue
        command = [line[2:]]
        index += 1
        while _continued(command) and index < len(lines):
            command.append(lines[index])
            index += 1
        output = []
        while index < len(lines) and not lines[index].startswith("$ "):
            output.append(lines[index])
            index += 1
        found.append(("\n".join(command), "\n".join(output).strip("\n")))
    return found


ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=\S")


def _line_commands(body: str) -> list[Command]:
    """Each command line of a prompt-less block, with the assignments made before it."""
    commands: list[Command] = []
    setup: list[str] = []
    current: list[str] = []
    for line in body.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current.append(line)
        text = "\n".join(current)
        if _continued(current):
            continue
        current = []
        if ASSIGNMENT.match(text) and " " not in text.split("=", 1)[0]:
            setup.append(text)
        else:
            commands.append(Command(text, setup="\n".join(setup)))
    return commands


def _table_commands(table: str) -> list[str]:
    return [cell for cell in re.findall(r"`([^`]+)`", table) if cell.startswith("hubble ")]


def collect_examples() -> list[Example]:
    examples: list[Example] = []
    for path in _doc_files():
        text = path.read_text()
        for marker in MARKER.finditer(text):
            line = text.count("\n", 0, marker.start()) + 1
            where = f"{path.relative_to(REPO_ROOT)}:{line}"
            kind, exit_status = _parse_marker(marker.group("args"), where)
            rest = text[marker.end() :]
            fence = FENCE.match(rest)
            if fence is not None:
                body = fence.group("body")
                prompts = _prompt_commands(body)
                commands = [Command(c, out) for c, out in prompts] if prompts else _line_commands(body)
            else:
                table = TABLE.match(rest)
                if table is None:
                    raise ValueError(
                        f"{where}: a docs-test marker must come right before a code block or table"
                    )
                commands = [Command(c) for c in _table_commands(table.group(0))]
            if not commands:
                raise ValueError(f"{where}: a docs-test block without a command")
            examples.append(Example(where, kind, commands, exit_status))
    return examples


EXAMPLES = collect_examples()


def _writes_to_file(command: str) -> bool:
    return re.search(r"(^|[^2&])>\s*[\w./-]+\s*(#.*)?$", command, re.M) is not None


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bin directory with this checkout's `hubble` and the test's `python`."""
    bin_dir = tmp_path_factory.mktemp("bin")
    hubble = bin_dir / "hubble"
    hubble.write_text(f'#!/bin/sh\nexec {sys.executable} -m hubblepy.cli "$@"\n')
    hubble.chmod(0o755)
    (bin_dir / "python").symlink_to(sys.executable)
    return bin_dir


@pytest.fixture(scope="module")
def replaying_server():
    """A real `hubble agent` that has replayed the shipped sample, verbatim."""
    procs = liveprocs.Procs()
    try:
        node = procs.agent("docs", "--replay", sample_capture_path(), "--replay-verbatim", "--rate", "0")
        expected = sum(1 for line in Path(sample_capture_path()).read_bytes().splitlines() if line.strip())
        channel = grpc.insecure_channel(node.address)
        try:
            stub = observer_pb2_grpc.ObserverStub(channel)
            deadline = time.monotonic() + 30
            while stub.ServerStatus(observer_pb2.ServerStatusRequest()).seen_flows < expected:
                assert time.monotonic() < deadline, "the agent did not replay the sample"
                time.sleep(0.05)
        finally:
            channel.close()
        yield node.address
    finally:
        procs.close()


def test_examples_are_marked():
    kinds = {example.kind for example in EXAMPLES}
    commands = sum(len(example.commands) for example in EXAMPLES)
    assert commands >= 20 and kinds == set(KINDS), [e.where for e in EXAMPLES]


def test_block_parsing():
    body = """# a comment
X="$(echo 1)"
hubble observe --input-file "$X" \\
    --jq '[.a,
           .b]'

hubble policy audit-report --input-file "$X" > report.txt  # quiet
"""
    commands = _line_commands(body)
    assert [c.text.split()[:2] for c in commands] == [["hubble", "observe"], ["hubble", "policy"]]
    assert commands[0].setup == 'X="$(echo 1)"' and commands[0].text.endswith(".b]'")
    assert not _writes_to_file(commands[0].text) and _writes_to_file(commands[1].text)
    prompts = _prompt_commands("$ hubble a \\\n  | jq '.a,\n .b'\nout 1\nout 2\n$ hubble c\n")
    assert prompts == [("hubble a \\\n  | jq '.a,\n .b'", "out 1\nout 2"), ("hubble c", "")]


@pytest.mark.skipif(
    shutil.which("jq") is None, reason="jq is not installed (scripts/bootstrap.sh installs it)"
)
@pytest.mark.parametrize("example", EXAMPLES, ids=[e.where for e in EXAMPLES])
def test_example_runs_and_prints(
    example: Example, tools: Path, tmp_path: Path, request: pytest.FixtureRequest
):
    env = clean_env()
    env["PATH"] = f"{tools}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    if example.kind == "live":
        env["HUBBLE_SERVER"] = request.getfixturevalue("replaying_server")
    sample = sample_capture_path("pci-cde" if example.kind == "pci-sample" else "payments")
    shutil.copy(sample, tmp_path / "flows.json")
    for command in example.commands:
        script = f"{command.setup}\n{command.text}" if command.setup else command.text
        out = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", script],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        context = f"{example.where}: {script}\nstdout: {out.stdout[:2000]}\nstderr: {out.stderr[:2000]}"
        assert out.returncode == example.exit_status, context
        if example.exit_status:
            # A documented failure prints what the docs show.
            assert command.documented is not None, context
            assert (out.stdout + out.stderr).strip() == command.documented, context
        elif not _writes_to_file(command.text):
            assert out.stdout.strip(), "no output where the docs promise some\n" + context
