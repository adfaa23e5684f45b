"""Client side of the lab node's control socket: one JSON request line, one JSON reply line."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from hubblepy.lab.errors import ControlError
from hubblepy.lab.state import control_path


def request(op: str, folder: Path | None = None, timeout: float = 60.0, **fields: Any) -> dict[str, Any]:
    path = control_path(folder)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(json.dumps({"op": op, **fields}).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except (FileNotFoundError, ConnectionRefusedError):
        raise ControlError("the lab is not up (run: hubble lab up)") from None
    except OSError as exc:
        raise ControlError(f"cannot talk to the lab node at {path}: {exc.strerror or exc}") from None
    try:
        reply = json.loads(data)
    except ValueError:
        raise ControlError("the lab node closed the connection without an answer") from None
    if "error" in reply:
        raise ControlError(reply["error"])
    return reply
