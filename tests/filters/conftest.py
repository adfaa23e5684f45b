"""Fixtures of the filter tests: the upstream flows and expected cases, parsed once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest


@pytest.fixture(scope="session")
def flow_lines(fixtures_dir: Path) -> list[bytes]:
    """The raw lines of flows.jsonl, without newlines."""
    return (fixtures_dir / "flows.jsonl").read_bytes().splitlines()


@pytest.fixture(scope="session")
def flow_records(flow_lines: list[bytes]) -> list[dict[str, Any]]:
    """flows.jsonl parsed into canonical GetFlowsResponse dicts."""
    return [orjson.loads(line) for line in flow_lines]


@pytest.fixture(scope="session")
def upstream_cases(fixtures_dir: Path) -> dict[str, dict[str, Any]]:
    """expected/cases.jsonl by case name."""
    lines = (fixtures_dir / "expected" / "cases.jsonl").read_bytes().splitlines()
    return {case["name"]: case for case in map(orjson.loads, lines)}
