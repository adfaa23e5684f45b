"""Every recorded upstream case: `hubble observe --input-file flows.jsonl ARGS` must match byte for byte."""

from __future__ import annotations

import json

import pytest
from hubbletest import FIXTURES, clean_env, run_hubble


def _cases() -> list[dict]:
    path = FIXTURES / "expected" / "cases.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


CASES = _cases()


# The same cases once more with the multi-process reader forced on (tiny blocks, any file size).
PARALLEL_ENV = {"HUBBLEPY_PARALLEL_MIN_BYTES": "0", "HUBBLEPY_PARALLEL_BLOCK_BYTES": "20000"}


@pytest.mark.parametrize("mode", ["one-process", "workers"])
@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_observe_matches_upstream(case: dict, mode: str, fixtures_dir) -> None:
    env = clean_env() | (PARALLEL_ENV if mode == "workers" else {"HUBBLEPY_WORKERS": "1"})
    proc = run_hubble(["observe", "--input-file", "flows.jsonl", *case["args"]], cwd=fixtures_dir, env=env)
    assert proc.stdout.decode("utf-8") == case["stdout"]
    assert proc.returncode == case["exit_code"], proc.stderr.decode()
    stderr = proc.stderr.decode("utf-8")
    if case["stderr_contains"] is None:
        assert stderr == ""
    else:
        assert case["stderr_contains"] in stderr
        assert stderr.count("\n") == 1, "errors are one line"


@pytest.mark.parametrize(
    "case", [c for c in CASES if c["name"] == "compact-all-default"], ids=["flows-subcommand"]
)
def test_flows_subcommand_is_the_same(case: dict, fixtures_dir) -> None:
    proc = run_hubble(["observe", "flows", "--input-file", "flows.jsonl", *case["args"]], cwd=fixtures_dir)
    assert proc.stdout.decode() == case["stdout"]


def test_fixture_cases_are_present() -> None:
    assert len(CASES) == 72, "the upstream fixture matrix must be available to the tests"
