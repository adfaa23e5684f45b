"""Where the lab keeps its state (so other processes can run down/status/exec) and how it is saved.

The directory is ``$HUBBLEPY_LAB_DIR`` or ``/run/hubblepy/lab``. It holds ``state.json`` (written
atomically by the lab node process after every change), ``node.pid``, ``control.sock`` and the logs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

DEFAULT_DIR = "/run/hubblepy/lab"


def lab_dir() -> Path:
    return Path(os.environ.get("HUBBLEPY_LAB_DIR", DEFAULT_DIR))


def state_path(folder: Path | None = None) -> Path:
    return (folder or lab_dir()) / "state.json"


def control_path(folder: Path | None = None) -> Path:
    return (folder or lab_dir()) / "control.sock"


def pid_path(folder: Path | None = None) -> Path:
    return (folder or lab_dir()) / "node.pid"


def load_state(folder: Path | None = None) -> dict[str, Any] | None:
    try:
        return json.loads(state_path(folder).read_text())
    except (OSError, ValueError):
        return None


def save_state(state: dict[str, Any], folder: Path | None = None) -> None:
    path = state_path(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1, sort_keys=False))
    os.replace(tmp, path)


def read_pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return pid
