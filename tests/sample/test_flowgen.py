"""The shipped sample capture and the benchmark generator produce canonical upstream-form lines."""

from __future__ import annotations

import io
from pathlib import Path

from hubbletest import run_hubble

from hubblepy.codec import ResponseDecoder
from hubblepy.sample.flowgen import mixed_flows, payments_story, write_jsonl
from hubblepy.sample.path import sample_capture_path


def _render(records) -> bytes:
    out = io.BytesIO()
    write_jsonl(records, out)
    return out.getvalue()


def test_shipped_capture_is_the_generated_story() -> None:
    assert Path(sample_capture_path()).read_bytes() == _render(payments_story())


def test_generated_lines_are_canonical() -> None:
    decoder = ResponseDecoder(on_unknown_field=lambda text: (_ for _ in ()).throw(AssertionError(text)))
    for line in _render(mixed_flows(2000, seed=3)).splitlines():
        decoder.decode(line)
        assert decoder.last_was_canonical, line[:200]


def test_story_shows_the_policy_denied_drop_and_audit() -> None:
    proc = run_hubble(
        [
            "observe",
            "--input-file",
            sample_capture_path(),
            "--namespace",
            "payments",
            "--verdict",
            "DROPPED",
            "--type",
            "drop",
        ]
    )
    assert proc.returncode == 0
    lines = proc.stdout.decode().splitlines()
    assert lines and all("payments/probe" in line and "Policy denied DROPPED" in line for line in lines)
    audit = run_hubble(["observe", "--input-file", sample_capture_path(), "--verdict", "AUDIT"])
    assert "INGRESS AUDITED" in audit.stdout.decode()
