"""Lab and audit-report tables: plain columns on pipes, rich tables on a real terminal (a pty)."""

from __future__ import annotations

import io
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

from hubblepy.cli.tables import plain_lines, renderer_for, rich_lines

ROWS = [["POD", "IP"], ["payments/api", "10.244.0.11"], ["kube-system/kube-dns", "10.244.0.13"]]
SAMPLE = Path(__file__).resolve().parents[2] / "hubblepy" / "sample" / "payments-sample.jsonl"


def test_plain_columns_are_aligned_with_two_spaces():
    assert plain_lines(ROWS) == [
        "POD                   IP",
        "payments/api          10.244.0.11",
        "kube-system/kube-dns  10.244.0.13",
    ]


def test_rich_table_has_a_bold_header_and_every_cell():
    lines = rich_lines(ROWS, width=80)
    text = "\n".join(lines)
    assert "\x1b[1m" in text  # bold header
    for cell in ("POD", "IP", "payments/api", "10.244.0.11", "kube-system/kube-dns", "10.244.0.13"):
        assert cell in text
    assert any(set(line.strip()) <= set("─━ ") and line.strip() for line in lines)  # the header rule


def test_renderer_follows_the_stream(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("TERM", raising=False)
    assert renderer_for(io.StringIO()) is plain_lines
    master, slave = pty.openpty()
    try:
        with os.fdopen(slave, "w", closefd=False) as terminal:
            assert renderer_for(terminal) is rich_lines
            monkeypatch.setenv("NO_COLOR", "1")
            assert renderer_for(terminal) is plain_lines
    finally:
        os.close(master)
        os.close(slave)


def _run_on_pty(argv: list[str]) -> str:
    master, slave = pty.openpty()
    env = {
        k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TERM") and not k.startswith("HUBBLE")
    }
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 30)
            if not ready:
                break
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
        proc.wait(30)
    assert proc.returncode == 0, b"".join(chunks)
    return b"".join(chunks).decode()


def test_audit_report_draws_with_rich_on_a_terminal_and_plain_on_a_pipe():
    argv = [sys.executable, "-m", "hubblepy.cli", "policy", "audit-report", "--input-file", str(SAMPLE)]
    on_terminal = _run_on_pty(argv)
    assert "\x1b[1m" in on_terminal and "payments/probe" in on_terminal
    piped = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout
    assert "\x1b[" not in piped
    assert piped.splitlines()[0].split() == [
        "SOURCE",
        "DESTINATION",
        "PORT",
        "DIRECTION",
        "COUNT",
        "FIRST",
        "SEEN",
        "LAST",
        "SEEN",
        "WOULD",
        "BE",
        "DENIED",
        "BY",
    ]
