"""Shared test helpers: where the fixtures live, and how to run the CLI as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# Recorded upstream outputs, the API field tables and seed policies (see tests/fixtures/README.md).
FIXTURES = REPO_ROOT / "tests" / "fixtures"


def clean_env() -> dict[str, str]:
    """An environment without HUBBLE_* variables or a hubble config file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUBBLE_")}
    env["XDG_CONFIG_HOME"] = "/nonexistent-hubblepy-test-config"
    env.pop("NO_COLOR", None)
    return env


def run_hubble(
    args: list[str],
    cwd: Path | None = None,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess:
    """Run `hubble ARGS` as a real process with pipes for stdout and stderr."""
    return subprocess.run(
        [sys.executable, "-m", "hubblepy.cli", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        env=clean_env() if env is None else env,
        timeout=timeout,
    )
