"""The lab node's control socket: one JSON request line, one JSON reply line.

* :func:`request` is the client (``hubble lab ...`` commands);
* :class:`ControlServer` is the node's side: a unix socket (mode 0600) in the lab directory served by
  one thread, and a dispatch table from the request's ``op`` to a handler. A handler returns the
  reply's fields (``ok`` is added) or raises :class:`~hubblepy.lab.errors.LabError` /
  :class:`~hubblepy.policy.PolicyError`, which become ``{"error": "<one line>"}``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from hubblepy.lab.errors import ControlError, LabError
from hubblepy.lab.state import control_path
from hubblepy.policy import PolicyError

Handler = Callable[[dict[str, Any]], dict[str, Any]]
MAX_REQUEST = 16 << 20  # a policy file is the largest thing a request carries


class BadRequest(LabError):
    """A request that lacks a field or names an unknown operation."""


def _read_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n") and len(data) <= MAX_REQUEST:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def request(op: str, folder: Path | None = None, timeout: float = 60.0, **fields: Any) -> dict[str, Any]:
    path = control_path(folder)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(json.dumps({"op": op, **fields}).encode() + b"\n")
            data = _read_line(sock)
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
    return dict(reply)


def field(req: dict[str, Any], name: str) -> Any:
    """A required field of a request (a missing one is a BadRequest, not an internal error)."""
    try:
        return req[name]
    except KeyError:
        raise BadRequest(f"request {req.get('op')!r} lacks the field {name!r}") from None


class ControlServer:
    """Serves the control socket in a thread; handlers run one at a time under ``lock``."""

    def __init__(
        self,
        folder: Path,
        handlers: Mapping[str, Handler],
        lock: threading.RLock,
        on_shutdown: Callable[[], None],
    ) -> None:
        self.path = control_path(folder)
        self.handlers = dict(handlers)
        self.lock = lock
        self.on_shutdown = on_shutdown
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(self.path))
        os.chmod(self.path, 0o600)
        sock.listen(8)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, args=(sock,), name="lab-control", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stops accepting (the serving thread ends at its next accept)."""
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError as exc:
                sys.stderr.write(f"lab node: closing the control socket: {exc}\n")
            self._sock = None

    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        """The reply to one request (never raises for a bad request or a refused change)."""
        op = req.get("op")
        handler = self.handlers.get(op) if isinstance(op, str) else None
        if handler is None:
            return {"error": f"unknown request {op!r}"}
        try:
            with self.lock:
                return {"ok": True, **handler(req)}
        except (LabError, PolicyError) as exc:
            return {"error": str(exc)}

    def _serve(self, sock: socket.socket) -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:  # closed by close(): the node is stopping
                return
            reply: dict[str, Any]
            with conn:
                try:
                    data = _read_line(conn)
                    req = json.loads(data or b"{}")
                    if not isinstance(req, dict):
                        raise BadRequest("a request is a JSON object")
                    reply = self.handle(req)
                except (ValueError, BadRequest) as exc:
                    reply = {"error": f"bad request: {exc}"}
                except Exception as exc:  # one broken handler must not stop the node: logged, answered
                    traceback.print_exc(file=sys.stderr)
                    reply = {"error": f"internal error: {type(exc).__name__}: {exc}"}
                try:
                    conn.sendall(json.dumps(reply).encode() + b"\n")
                except OSError as exc:  # the client went away; the change (if any) is applied
                    sys.stderr.write(f"lab node: cannot answer a control request: {exc}\n")
            if reply.get("shutdown"):
                self.on_shutdown()


__all__ = ["BadRequest", "ControlError", "ControlServer", "field", "request"]
