"""pytest configuration shared by every test folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from hubbletest import shared_dir


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The upstream fixtures folder (flows.jsonl and expected/cases.jsonl)."""
    path = shared_dir() / "fixtures"
    if not (path / "flows.jsonl").exists():
        pytest.skip(f"upstream fixtures not found at {path} (set HUBBLEPY_SHARED)")
    return path
