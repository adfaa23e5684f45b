"""`hubble observe --input-file`: reading rules, bad lines, --jq, as a real process."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
from hubbletest import run_hubble

from hubblepy.cli.file_input import MAX_LINE_BYTES

FLOW = {
    "flow": {
        "time": "2024-07-04T12:00:01Z",
        "uuid": "u-1",
        "verdict": "DROPPED",
        "IP": {"source": "10.1.0.5", "destination": "10.1.0.6", "ipVersion": "IPv4"},
        "l4": {"TCP": {"source_port": 5555, "destination_port": 5432, "flags": {"SYN": True}}},
        "source": {"identity": 4242, "namespace": "shop", "pod_name": "web-1"},
        "destination": {"identity": 4343, "namespace": "shop", "pod_name": "db-0"},
        "node_name": "lab-worker",
        "event_type": {"type": 1, "sub_type": 133},
        "is_reply": False,
        "Summary": "TCP Flags: SYN",
    },
    "node_name": "lab-worker",
    "time": "2024-07-04T12:00:01Z",
}
LINE = orjson.dumps(FLOW)
COMPACT = (
    "Jul  4 12:00:01.000: shop/web-1:5555 (ID:4242) -> shop/db-0:5432 (ID:4343) "
    "Policy denied DROPPED (TCP Flags: SYN)\n"
)


def _warnings(stderr: bytes) -> list[str]:
    return [line.split(" level=", 1)[1] for line in stderr.decode().splitlines()]


def test_bad_lines_are_warned_with_their_number_and_skipped(tmp_path: Path) -> None:
    path = tmp_path / "flows.json"
    path.write_bytes(b"not json\n" + LINE + b"\n\n[1,2]\n" + LINE + b"\r\n")
    proc = run_hubble(["observe", "--input-file", str(path)])
    assert proc.returncode == 0
    assert proc.stdout.decode() == COMPACT * 2
    warnings = _warnings(proc.stderr)
    assert len(warnings) == 3
    assert warnings[0].startswith('WARN msg="Failed to unmarshal json to flow" error="proto: syntax error')
    assert 'line="not json" line_number=1' in warnings[0]
    assert 'line="" line_number=3' in warnings[1]
    assert "line=[1,2] line_number=4" in warnings[2]


def test_bad_lines_are_reported_even_when_a_filter_skips_them(tmp_path: Path) -> None:
    path = tmp_path / "flows.json"
    path.write_bytes(LINE + b"\n{broken\n")
    proc = run_hubble(["observe", "--input-file", str(path), "--namespace", "shop"])
    assert proc.stdout.decode() == COMPACT
    assert "line_number=2" in proc.stderr.decode()


def test_stdin_and_a_line_too_long(tmp_path: Path) -> None:
    long_line = b"{" + b" " * MAX_LINE_BYTES + b"}"
    proc = run_hubble(["observe", "--input-file", "-"], stdin=LINE + b"\n" + long_line + b"\n" + LINE + b"\n")
    assert proc.returncode == 1
    assert proc.stdout.decode() == COMPACT  # what came before the long line is printed
    assert proc.stderr.decode() == "bufio.Scanner: token too long\n"
    just_fits = b"{" + b" " * (MAX_LINE_BYTES - 2) + b"}"
    proc = run_hubble(
        ["observe", "--input-file", "-", "--first", "1"], stdin=LINE + b"\n" + just_fits + b"\n"
    )
    assert proc.returncode == 0 and proc.stdout.decode() == COMPACT


def test_missing_file_and_directory(tmp_path: Path) -> None:
    proc = run_hubble(["observe", "--input-file", "nonexistent.jsonl"], cwd=tmp_path)
    assert (proc.returncode, proc.stderr.decode()) == (
        1,
        "open nonexistent.jsonl: no such file or directory\n",
    )
    proc = run_hubble(["observe", "--input-file", "."], cwd=tmp_path)
    assert (proc.returncode, proc.stderr.decode()) == (1, "read .: is a directory\n")


def test_jq_prints_results_and_checks_the_program_first(tmp_path: Path) -> None:
    path = tmp_path / "flows.json"
    path.write_bytes(LINE + b"\n" + LINE + b"\n")
    proc = run_hubble(["observe", "--input-file", str(path), "--jq", ".flow.source.pod_name, .flow.l4.TCP"])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.decode().splitlines()
    assert lines[0] == "web-1"
    assert json.loads(lines[1]) == FLOW["flow"]["l4"]["TCP"]
    assert len(lines) == 4
    bad = run_hubble(["observe", "--input-file", "nonexistent.jsonl", "--jq", ".flow | ("])
    assert bad.returncode == 1
    assert bad.stderr.decode().startswith("invalid --jq expression:")
    assert bad.stderr.decode().count("\n") == 1


def test_json_output_rewrites_non_canonical_input(tmp_path: Path) -> None:
    camel = b'{"flow":{"uuid":"d","verdict":2,"sourceNames":["x.io"],"isReply":true},"time":"2024-07-04T14:00:00.123+02:00"}'
    path = tmp_path / "flows.json"
    path.write_bytes(camel + b"\n")
    proc = run_hubble(["observe", "--input-file", str(path), "-o", "json"])
    assert proc.stdout == (
        b'{"flow":{"uuid":"d","verdict":"DROPPED","source_names":["x.io"],"is_reply":true},'
        b'"time":"2024-07-04T12:00:00.123Z"}\n'
    )
