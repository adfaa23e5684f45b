"""pytest configuration shared by every test folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from hubbletest import FIXTURES


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The fixtures folder (upstream's flows.jsonl and expected/cases.jsonl, among others)."""
    return FIXTURES


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the environment check (tests/test_00_environment.py) before everything else."""
    items.sort(key=lambda item: item.path.name != "test_00_environment.py")
