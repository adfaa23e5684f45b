"""Fixtures for relay tests: real agent and relay processes (helpers shared with tests/observer)."""

import importlib.util
import sys
from pathlib import Path

import pytest

if "liveprocs" not in sys.modules:
    _spec = importlib.util.spec_from_file_location(
        "liveprocs", Path(__file__).parent.parent / "observer" / "liveprocs.py"
    )
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["liveprocs"] = _module
    _spec.loader.exec_module(_module)


@pytest.fixture
def procs():
    owner = sys.modules["liveprocs"].Procs()
    yield owner
    owner.close()
