"""Evidence bundles from a flows file: same bytes as `hubble observe -o json`, verify, tampering, signatures."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from hubbletest import run_hubble

from hubblepy.sample.path import sample_capture_path

SAMPLE = sample_capture_path()
QUERIES = [
    ["--namespace", "payments", "--verdict", "DROPPED"],
    ["--type", "l7"],
    [
        "--since",
        "2026-03-01T00:00:00.1Z",
        "--until",
        "2026-03-01T00:00:00.5Z",
        "--not",
        "--verdict",
        "FORWARDED",
    ],
    ["--pod", "payments/api", "--protocol", "tcp"],
]


def export(out: Path, *args: str) -> None:
    result = run_hubble(["evidence", "export", "--input-file", SAMPLE, *args, "--output", str(out)])
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().startswith(f"wrote {out}: ")


def verify(folder: Path, *extra: str):
    result = run_hubble(["evidence", "verify", str(folder), *extra])
    return result.returncode, result.stdout.decode().strip()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ev") / "bundle"
    export(out, "--namespace", "payments", "--verdict", "DROPPED")
    return out


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: " ".join(q))
def test_flows_are_what_observe_prints_and_the_bundle_verifies(tmp_path, query):
    out = tmp_path / "b"
    export(out, *query)
    observed = run_hubble(["observe", "--input-file", SAMPLE, *query, "-o", "json"])
    assert observed.returncode == 0
    assert observed.stdout, "the query should match something"
    assert (out / "flows.jsonl").read_bytes() == observed.stdout
    code, line = verify(out)
    assert code == 0, line
    assert "\n" not in line and "intact" in line
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["lines"] == observed.stdout.count(b"\n")
    assert manifest["query"]["observe_command"].startswith("hubble observe --input-file")


def test_manifest_records_query_counts_chain_and_file_source(bundle):
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["counts"]["by_verdict"] == {"DROPPED": 8}
    assert manifest["query"]["source"]["kind"] == "file"
    assert re.fullmatch(r"[0-9a-f]{64}", manifest["query"]["source"]["sha256"])
    assert manifest["integrity"]["lines"] == 8
    assert len((bundle / "chain.txt").read_text().splitlines()) == 8
    assert manifest["integrity"]["chain_head"] == (bundle / "chain.txt").read_text().split()[-1]
    assert manifest["completeness"]["complete"] is True
    assert manifest["fqdn_cache"]["present"] is False
    assert manifest["policies"]["source"] == "none"


def test_report_is_self_contained_and_groups_the_drops(bundle):
    page = (bundle / "report.html").read_text()
    assert "<script" not in page and "http://" not in page and "https://" not in page and " src=" not in page
    assert "hubble evidence verify" in page
    assert "Complete:" in page
    assert "payments/api" in page and "8080/TCP" in page and "payments/default-deny" in page


def _tampered(bundle: Path, tmp_path: Path, change) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    lines = (copy / "flows.jsonl").read_bytes().split(b"\n")[:-1]
    change(lines)
    (copy / "flows.jsonl").write_bytes(b"".join(line + b"\n" for line in lines))
    return copy


def _flip_one_byte(lines: list[bytes]) -> None:
    line = bytearray(lines[4])
    line[100] ^= 0x01
    lines[4] = bytes(line)


def _swap(lines: list[bytes]) -> None:
    lines[2], lines[3] = lines[3], lines[2]


def _delete(lines: list[bytes]) -> None:
    del lines[6]


def _add(lines: list[bytes]) -> None:
    lines.append(lines[0])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_flip_one_byte, "flows.jsonl line 5 was altered"),
        (_swap, "flows.jsonl line 3 was reordered (it was recorded as line 4)"),
        (_delete, "flows.jsonl line 7 is missing (recorded line 7 removed)"),
        (_add, "flows.jsonl line 9 was added"),
    ],
)
def test_verify_names_the_first_changed_line(bundle, tmp_path, change, message):
    code, line = verify(_tampered(bundle, tmp_path, change))
    assert code == 1
    assert line.startswith(f"FAILED: {message}"), line


def test_verify_names_the_manifest_field_and_altered_files(bundle, tmp_path):
    copy = tmp_path / "m"
    shutil.copytree(bundle, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["counts"]["flows"] = 7
    (copy / "manifest.json").write_text(json.dumps(manifest))
    code, line = verify(copy)
    assert code == 1 and "manifest field counts.flows no longer matches" in line
    manifest["counts"]["flows"] = 8
    manifest["integrity"]["chain_head"] = "0" * 64
    (copy / "manifest.json").write_text(json.dumps(manifest))
    code, line = verify(copy)
    assert code == 1 and "manifest field integrity.chain_head" in line
    shutil.rmtree(copy)
    shutil.copytree(bundle, copy)
    with open(copy / "report.html", "a") as fh:
        fh.write("<p>all good</p>")
    code, line = verify(copy)
    assert code == 1 and "report.html was altered" in line
    (copy / "chain.txt").unlink()
    assert verify(copy) == (1, "FAILED: chain.txt is missing")


def test_signed_bundle_verifies_with_the_key_and_fails_when_changed(tmp_path):
    keys = run_hubble(
        ["evidence", "keygen", "--private", str(tmp_path / "k.pem"), "--public", str(tmp_path / "k.pub")]
    )
    assert keys.returncode == 0, keys.stderr.decode()
    assert (tmp_path / "k.pem").stat().st_mode & 0o777 == 0o600
    out = tmp_path / "signed"
    export(out, "--verdict", "AUDIT", "--sign-key", str(tmp_path / "k.pem"))
    code, line = verify(out, "--pub-key", str(tmp_path / "k.pub"))
    assert code == 0 and "Ed25519 signature good" in line, line
    code, line = verify(out)
    assert code == 0 and "not checked" in line
    # A re-computed manifest (say, after editing flows and the chain) no longer matches the signature.
    body = (out / "manifest.json").read_bytes()
    (out / "manifest.json").write_bytes(body.replace(b'"AUDIT": 2', b'"AUDIT": 2 '))
    code, line = verify(out, "--pub-key", str(tmp_path / "k.pub"))
    assert code == 1 and "altered after signing" in line
    (out / "manifest.json").write_bytes(body)
    other = run_hubble(
        ["evidence", "keygen", "--private", str(tmp_path / "o.pem"), "--public", str(tmp_path / "o.pub")]
    )
    assert other.returncode == 0
    code, line = verify(out, "--pub-key", str(tmp_path / "o.pub"))
    assert code == 1 and "not signed by this key" in line
    unsigned = tmp_path / "unsigned"
    export(unsigned, "--verdict", "AUDIT")
    code, line = verify(unsigned, "--pub-key", str(tmp_path / "k.pub"))
    assert code == 1 and "manifest.sig is missing" in line


def test_keygen_never_overwrites(tmp_path):
    (tmp_path / "k.pem").write_text("mine")
    result = run_hubble(
        ["evidence", "keygen", "--private", str(tmp_path / "k.pem"), "--public", str(tmp_path / "k.pub")]
    )
    assert result.returncode == 1 and "already exists" in result.stderr.decode()
    assert (tmp_path / "k.pem").read_text() == "mine"


def test_lost_events_in_the_input_make_the_export_incomplete(tmp_path):
    lines = Path(SAMPLE).read_bytes().splitlines(keepends=True)
    lost = (
        b'{"lost_events":{"source":"PERF_EVENT_RING_BUFFER","num_events_lost":"7","cpu":1},'
        b'"node_name":"lab-worker","time":"2026-03-01T00:00:00.100000000Z"}\n'
    )
    capture = tmp_path / "capture.jsonl"
    capture.write_bytes(b"".join(lines[:10]) + lost + b"".join(lines[10:]))
    out = tmp_path / "b"
    result = run_hubble(["evidence", "export", "--input-file", str(capture), "--output", str(out)])
    assert result.returncode == 0, result.stderr.decode()
    assert "NOT complete" in result.stdout.decode()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["completeness"]["complete"] is False
    assert manifest["completeness"]["problems"][0].startswith("7 events lost (PERF_EVENT_RING_BUFFER)")
    assert manifest["counts"]["lost_event_records"] == 1
    assert "NOT complete" in (out / "report.html").read_text()
    assert verify(out)[0] == 0
    # The query's filters hide the record from flows.jsonl, not from the completeness statement.
    filtered = tmp_path / "filtered"
    result = run_hubble(
        [
            "evidence",
            "export",
            "--input-file",
            str(capture),
            "--verdict",
            "DROPPED",
            "--output",
            str(filtered),
        ]
    )
    manifest = json.loads((filtered / "manifest.json").read_text())
    assert b"lost_events" not in (filtered / "flows.jsonl").read_bytes()
    assert manifest["completeness"]["complete"] is False
    assert manifest["completeness"]["lost_events"][0]["count"] == 7
    # Outside the time window it is only a note.
    later = tmp_path / "later"
    result = run_hubble(
        [
            "evidence",
            "export",
            "--input-file",
            str(capture),
            "--since",
            "2026-03-01T00:00:00.2Z",
            "--output",
            str(later),
        ]
    )
    assert result.returncode == 0, result.stderr.decode()
    completeness = json.loads((later / "manifest.json").read_text())["completeness"]
    assert completeness["complete"] is True
    assert any("outside the time window" in note for note in completeness["notes"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--input-file", SAMPLE], "needs --output"),
        (["--input-file", SAMPLE, "-o", "compact", "--output", "X"], "-o cannot be used"),
        (["--input-file", SAMPLE, "--follow", "--output", "X"], "--follow cannot be used"),
        (["--input-file", SAMPLE, "--verdict", "NOPE", "--output", "X"], "NOPE"),
        (["--input-file", "/nonexistent/f", "--output", "X"], "/nonexistent/f"),
        (
            ["--server", "127.0.0.1:1", "--timeout", "1s", "--output", "X"],
            "failed to connect to '127.0.0.1:1'",
        ),
        (
            ["--input-file", SAMPLE, "--since", "yesterday-ish", "--output", "X"],
            "failed to parse the since time",
        ),
        (
            ["--input-file", SAMPLE, "--sign-key", "/nonexistent/k.pem", "--output", "X"],
            "cannot read signing key",
        ),
    ],
)
def test_bad_export_is_one_line_and_leaves_nothing(tmp_path, args, message):
    args = [str(tmp_path / "X") if a == "X" else a for a in args]
    result = run_hubble(["evidence", "export", *args])
    assert result.returncode == 1
    err = result.stderr.decode()
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "X").exists()


def test_export_refuses_a_non_empty_directory(tmp_path):
    (tmp_path / "old.txt").write_text("keep")
    result = run_hubble(["evidence", "export", "--input-file", SAMPLE, "--output", str(tmp_path)])
    assert result.returncode == 1 and "not empty" in result.stderr.decode()
    assert [p.name for p in tmp_path.iterdir()] == ["old.txt"]


def test_a_manifest_of_another_shape_fails_closed(bundle, tmp_path):
    copy = tmp_path / "shape"
    shutil.copytree(bundle, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["integrity"] = ["not", "an", "object"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    code, line = verify(copy)
    assert code == 1 and "does not have the structure of a bundle manifest" in line
    (copy / "manifest.json").write_text("[]")
    assert verify(copy) == (1, "FAILED: manifest field format is not 'hubblepy-evidence/1'")
    assert verify(tmp_path / "nowhere")[0] == 1


def test_input_lines_that_cannot_be_read_make_the_export_incomplete(tmp_path):
    lines = Path(SAMPLE).read_bytes().splitlines(keepends=True)
    capture = tmp_path / "capture.jsonl"
    capture.write_bytes(b"".join(lines[:3]) + b'{"flow": broken\nnot json\n' + b"".join(lines[3:6]))
    out = tmp_path / "b"
    result = run_hubble(["evidence", "export", "--input-file", str(capture), "--output", str(out)])
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr.decode().count("Failed to unmarshal json to flow") == 2  # observe's own warnings
    completeness = json.loads((out / "manifest.json").read_text())["completeness"]
    assert completeness["complete"] is False
    assert completeness["problems"] == [
        "2 line(s) of the input could not be read and were skipped (lines 4, 5)"
    ]
    assert completeness["unreadable_input_lines"] == [4, 5]
    assert (out / "flows.jsonl").read_bytes() == b"".join(lines[:6])
