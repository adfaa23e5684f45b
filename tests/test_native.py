"""The mypyc build of the proxy's hot modules: it is made, loaded by new processes, and never used when
any source of the group changed since, when it was made for another interpreter, or when turned off."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from hubblepy import native

REPO = Path(__file__).resolve().parents[1]
PROBE = (
    "from hubblepy import native\n"
    "import hubblepy.proxy.http as http, hubblepy.proxy.accesslog as accesslog\n"
    "print(native.is_compiled(http), native.is_compiled(accesslog), http.ClientConnection.__module__)\n"
)


def _probe(folder: Path, **env: str) -> str:
    environ = dict(os.environ, PYTHONPATH=str(REPO), HUBBLEPY_NATIVE_DIR=str(folder))
    environ.pop("HUBBLEPY_NATIVE", None)
    environ.update(env)
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=environ, timeout=60, check=True
    )
    return done.stdout.strip()


def _linked_build(build: Path, folder: Path, edit: Callable[[dict], None]) -> Path:
    """``folder``: links to the files of ``build`` and a copy of its manifest changed by ``edit``."""
    folder.mkdir()
    for item in build.iterdir():
        if item.name != native.MANIFEST:
            (folder / item.name).symlink_to(item)
    manifest = json.loads((build / native.MANIFEST).read_text())
    edit(manifest)
    (folder / native.MANIFEST).write_text(json.dumps(manifest))
    return folder


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("mypyc", reason="mypyc comes with mypy (the dev extra)")
    return native.build(tmp_path_factory.mktemp("native") / "build")


def test_a_fresh_build_is_loaded_by_new_processes(build: Path) -> None:
    assert native.stale_reason(build) is None
    assert _probe(build) == "True True hubblepy.proxy.http"
    assert _probe(build, HUBBLEPY_NATIVE="0") == "False False hubblepy.proxy.http"


def test_a_changed_source_sends_the_whole_group_back_to_python(build: Path, tmp_path: Path) -> None:
    def as_if_accesslog_was_edited(manifest: dict) -> None:
        manifest["modules"]["hubblepy.proxy.accesslog"]["sha256"] = "0" * 64

    changed = _linked_build(build, tmp_path / "changed", as_if_accesslog_was_edited)
    reason = native.stale_reason(changed)
    assert reason is not None and "accesslog.py changed since the build" in reason
    assert _probe(changed) == "False False hubblepy.proxy.http"  # http alone would hold the old accesslog


def test_a_build_for_another_interpreter_or_a_missing_file_is_not_used(build: Path, tmp_path: Path) -> None:
    def another_interpreter(manifest: dict) -> None:
        manifest["interpreter"] = "cpython-399 .cpython-399-x86_64-linux-gnu.so"

    other = _linked_build(build, tmp_path / "other", another_interpreter)
    assert "built for" in (native.stale_reason(other) or "")
    assert _probe(other) == "False False hubblepy.proxy.http"

    missing = tmp_path / "missing"
    missing.mkdir()
    (missing / native.MANIFEST).write_text((build / native.MANIFEST).read_text())
    assert "missing" in (native.stale_reason(missing) or "")
    assert _probe(missing) == "False False hubblepy.proxy.http"
    assert "no build" in (native.stale_reason(tmp_path / "none") or "")


def test_status_command_says_which_build_a_process_would_load(build: Path, tmp_path: Path) -> None:
    def status(folder: Path) -> str:
        environ = dict(os.environ, PYTHONPATH=str(REPO), HUBBLEPY_NATIVE_DIR=str(folder))
        done = subprocess.run(
            [sys.executable, "-m", "hubblepy.native", "status"],
            capture_output=True,
            text=True,
            env=environ,
            timeout=60,
            check=True,
        )
        return done.stdout.strip()

    assert status(build) == f"compiled: {build}"
    assert status(tmp_path / "none").startswith("Python source: no build in")
