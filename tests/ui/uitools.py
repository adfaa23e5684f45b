"""Helpers for the `hubble ui` tests: the server as a real process, Debian's chromium via Playwright.

Playwright's own browser download is never used: the tests launch the system chromium
(``/usr/bin/chromium``, Debian package ``chromium``, installed by scripts/bootstrap.sh) and skip
with the reason when it or the Playwright package is missing. Screenshots go to
``build/ui-artifacts/`` (``HUBBLEPY_UI_ARTIFACTS`` overrides) and stay after the run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hubbletest import REPO_ROOT, clean_env

ARTIFACTS = Path(os.environ.get("HUBBLEPY_UI_ARTIFACTS", REPO_ROOT / "build" / "ui-artifacts"))


def chromium_path() -> str:
    path = os.environ.get("HUBBLEPY_CHROMIUM") or shutil.which("chromium")
    if not path:
        pytest.skip(
            "Debian's chromium is not installed (apt-get install chromium; scripts/bootstrap.sh does)"
        )
    return path


def artifact(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / name


class UiProcess:
    """`hubble ui ARGS --listen-address 127.0.0.1:0` as a real process; ``url`` once it listens."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hubblepy.cli", "ui", "--listen-address", "127.0.0.1:0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO_ROOT,
            env={**(env or clean_env()), "PYTHONPATH": str(REPO_ROOT)},
        )
        line = self.proc.stdout.readline()
        if "serving the service map on " not in line:
            self.stop()
            raise AssertionError(f"hubble ui did not start: {line!r} {self.proc.stderr.read()!r}")
        self.url = line.rsplit(" ", 1)[1].strip()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@contextlib.contextmanager
def browser_page(width: int = 1400, height: int = 900) -> Iterator:
    """A page of a headless Debian chromium, downloads allowed."""
    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install -e '.[dev]')")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            context = browser.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
            yield context.new_page()
        finally:
            browser.close()


def edge_state(page, source: str, target: str) -> str | None:  # noqa: ANN001 - playwright Page
    """The state (allowed/dropped/audit) of the first edge between two map nodes, None if there is none."""
    return page.evaluate(
        """([s, t]) => {
            const e = window.hubbleUI.cy.edges().filter((e) => e.source().id() === s && e.target().id() === t);
            return e.length ? e.first().data('state') : null;
        }""",
        [source, target],
    )


def wait_edge_state(page, source: str, target: str, state: str, timeout_s: float = 30) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while edge_state(page, source, target) != state:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"edge {source} -> {target} never became {state}: {edge_state(page, source, target)}"
            )
        page.wait_for_timeout(200)


def click_edge(page, source: str, target: str) -> None:  # noqa: ANN001
    """A real mouse click on the middle of an edge, as drawn."""
    page.wait_for_timeout(300)  # the layout settles after the last update
    point = page.evaluate(
        """([s, t]) => {
            const cy = window.hubbleUI.cy;
            const e = cy.edges().filter((e) => e.source().id() === s && e.target().id() === t).first();
            const p = e.renderedMidpoint();
            const box = cy.container().getBoundingClientRect();
            return {x: box.left + p.x, y: box.top + p.y};
        }""",
        [source, target],
    )
    page.mouse.click(point["x"], point["y"])


def table_rows(page) -> list[dict]:  # noqa: ANN001
    return page.evaluate(
        """() => [...document.querySelectorAll('#flows tbody tr.flow')].map((tr) => {
            const c = [...tr.children].map((td) => td.textContent);
            return {time: c[0], source: c[1], destination: c[2], port: c[3], l7: c[4], verdict: c[5],
                    drop_reason: c[6], policy: c[7]};
        })"""
    )


def wait_rows(page, predicate, timeout_s: float = 20) -> list[dict]:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while True:
        rows = table_rows(page)
        if predicate(rows):
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"the flow table never matched: {rows[:5]}")
        page.wait_for_timeout(200)
