"""Fixtures for the printer tests: render records with a real Printer into byte buffers."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest

from hubblepy.printer import Printer, PrintOptions

Render = Callable[[PrintOptions, list[dict]], tuple[str, str]]


def _render(options: PrintOptions, records: list[dict]) -> tuple[str, str]:
    """(stdout, stderr) text of printing `records` with `options`."""
    out, err = io.BytesIO(), io.BytesIO()
    printer = Printer(options, out, err)
    try:
        for record in records:
            printer.write(record)
    finally:
        printer.close()
    return out.getvalue().decode(), err.getvalue().decode()


@pytest.fixture
def render() -> Render:
    """Print records and return (stdout, stderr)."""
    return _render


@pytest.fixture
def stdout_of() -> Callable[[PrintOptions, list[dict]], str]:
    """Print records and return stdout, checking that nothing went to stderr."""

    def run(options: PrintOptions, records: list[dict]) -> str:
        out, err = _render(options, records)
        assert err == ""
        return out

    return run
