"""pytest configuration shared by every test folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from hubbletest import FIXTURES


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The fixtures folder (upstream's flows.jsonl and expected/cases.jsonl, among others)."""
    return FIXTURES
