"""The node's end of the DNS proxy's notify protocol (the no-race ordering guarantee).

The node listens on a unix SOCK_SEQPACKET socket (the path it gives the proxy as
``--fqdn-notify PATH``). Before releasing an allowed answer with addresses, the proxy sends one
orjson datagram ``{"id", "endpoint_ip", "name", "ips", "ttl", "cnames", "time_ns"}``; the node
applies it (FQDN cache, ipcache, policy map) and only then answers ``{"id": <same>}``, so the
client never sees an answer whose allow is not yet in the datapath. A notification the node cannot
apply (unknown endpoint, bad fields) is answered ``{"id": .., "error": "..."}`` at once: the proxy
releases the answer, and the datapath, which has no entry for it, drops the connection (fails
closed). Undecodable datagrams are counted and dropped; the connection stays open.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

MAX_DATAGRAM = 64 * 1024


@dataclass
class Notification:
    """One decoded notify datagram."""

    id: int
    endpoint_ip: str
    name: str
    ips: list[str]
    ttl: int
    cnames: list[str] = field(default_factory=list)
    time_ns: int = 0

    @classmethod
    def decode(cls, data: bytes) -> Notification:
        """Raises ValueError on anything but the contract's object."""
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
        ident = doc.get("id")
        if not isinstance(ident, int) or isinstance(ident, bool):
            raise ValueError("id must be an integer")
        note = cls(ident, doc.get("endpoint_ip"), doc.get("name"), doc.get("ips"), doc.get("ttl"))  # type: ignore[arg-type]
        note.cnames = doc.get("cnames") or []
        note.time_ns = doc.get("time_ns") or 0
        return note

    def check(self) -> None:
        """Field types (after ``decode`` found the id, so an error can still be answered)."""
        if not isinstance(self.endpoint_ip, str) or not self.endpoint_ip:
            raise ValueError("endpoint_ip must be a non-empty string")
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("name must be a non-empty string")
        if not isinstance(self.ips, list) or not all(isinstance(ip, str) for ip in self.ips):
            raise ValueError("ips must be a list of strings")
        if not isinstance(self.ttl, int) or isinstance(self.ttl, bool) or self.ttl < 0:
            raise ValueError("ttl must be a non-negative integer")
        if not isinstance(self.cnames, list) or not isinstance(self.time_ns, int):
            raise ValueError("cnames must be a list and time_ns an integer")


Handler = Callable[[Notification], None]


class NotifyServer:
    """Listens at ``path``; calls ``handler`` for every notification, then acknowledges it.

    ``handler`` raising ValueError (or any other Exception) makes the answer an error
    acknowledgement; the server keeps serving.
    """

    def __init__(self, path: str | Path, handler: Handler) -> None:
        self.path = Path(path)
        self.handler = handler
        self.received = 0
        self.applied = 0
        self.errors = 0
        self.malformed = 0
        self._sock: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._closed = threading.Event()

    def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sock.bind(str(self.path))
        os.chmod(self.path, 0o600)
        sock.listen(16)
        self._sock = sock
        thread = threading.Thread(target=self._accept, name="fqdn-notify", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _accept(self) -> None:
        sock = self._sock
        assert sock is not None
        while not self._closed.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            with self._lock:
                if self._closed.is_set():
                    conn.close()
                    return
                self._conns.add(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), name="fqdn-notify-conn", daemon=True)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            while True:
                try:
                    data = conn.recv(MAX_DATAGRAM)
                except OSError:
                    return
                if not data:
                    return
                reply = self.handle_datagram(data)
                if reply is not None:
                    try:
                        conn.send(reply)
                    except OSError:
                        return
        finally:
            with self._lock:
                self._conns.discard(conn)
            conn.close()

    def handle_datagram(self, data: bytes) -> bytes | None:
        """One datagram -> its acknowledgement (None when it carries no usable id)."""
        self.received += 1
        try:
            note = Notification.decode(data)
        except ValueError:
            self.malformed += 1
            return None
        try:
            note.check()
            self.handler(note)
        except Exception as exc:  # the answer is released either way; the datapath fails closed
            self.errors += 1
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return orjson.dumps({"id": note.id, "error": first})
        self.applied += 1
        return orjson.dumps({"id": note.id})

    def stats(self) -> dict[str, int]:
        return {
            "received": self.received,
            "applied": self.applied,
            "errors": self.errors,
            "malformed": self.malformed,
        }

    def close(self) -> None:
        self._closed.set()
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout=2)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


__all__ = ["MAX_DATAGRAM", "Notification", "NotifyServer"]
