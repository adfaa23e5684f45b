"""The progress bar of long `hubble observe --input-file` reads: on a terminal stderr only, never on pipes."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hubbletest import clean_env

from hubblepy.sample.path import sample_capture_path


def _run(args: list[str], env: dict[str, str], stderr_tty: bool) -> tuple[bytes, bytes]:
    """Run `hubble ARGS` with stdout on a pipe and stderr on a pipe or a pseudo-terminal."""
    command = [sys.executable, "-m", "hubblepy.cli", *args]
    if not stderr_tty:
        out = subprocess.run(command, capture_output=True, env=env, timeout=120, check=True)
        return out.stdout, out.stderr
    master, slave = os.openpty()
    # stdout goes to a file, not a pipe: nothing to drain while the terminal is read
    stdout_file = tempfile.TemporaryFile()  # noqa: SIM115 - closed below
    try:
        proc = subprocess.Popen(command, stdout=stdout_file, stderr=slave, env=env)
    finally:
        os.close(slave)
    terminal = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: every writer of the terminal is gone
            break
        if not chunk:
            break
        terminal += chunk
    os.close(master)
    assert proc.wait(60) == 0
    stdout_file.seek(0)
    with stdout_file:
        return stdout_file.read(), terminal


@pytest.mark.parametrize("parallel", [False, True], ids=["one-process", "workers"])
def test_bar_on_a_terminal_stderr_only_and_output_unchanged(tmp_path, parallel):
    path = tmp_path / "flows.json"
    path.write_bytes(Path(sample_capture_path()).read_bytes() * 20)
    env = clean_env() | {"HUBBLEPY_PROGRESS_MIN_BYTES": "1", "TERM": "xterm"}
    if parallel:
        env |= {"HUBBLEPY_PARALLEL_MIN_BYTES": "1", "HUBBLEPY_PARALLEL_BLOCK_BYTES": "20000"}
    else:
        env["HUBBLEPY_WORKERS"] = "1"
    args = ["observe", "--input-file", str(path), "-o", "json"]
    piped_out, piped_err = _run(args, env, stderr_tty=False)
    assert piped_err == b"" and piped_out.count(b"\n") == 78 * 20
    tty_out, terminal = _run(args, env, stderr_tty=True)
    assert tty_out == piped_out
    assert b"flows.json" in terminal  # the bar's label
    # below the size threshold: no bar, even on a terminal
    small_out, small_terminal = _run(
        args, env | {"HUBBLEPY_PROGRESS_MIN_BYTES": str(1 << 40)}, stderr_tty=True
    )
    assert small_out == piped_out and small_terminal == b""
