"""The node's notify server against a real client process speaking the contract's datagrams."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import orjson

from hubblepy.fqdn.notify import Notification, NotifyServer

CLIENT = textwrap.dedent(
    """
    import socket, sys, orjson
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.connect(sys.argv[1])
    s.settimeout(5)
    out = []
    for i, raw in enumerate(sys.stdin.buffer.read().split(b"\\n")):
        if not raw:
            continue
        s.send(raw)
        if raw.startswith(b"{") and b'"id"' in raw:
            out.append(orjson.loads(s.recv(65536)))
    print(orjson.dumps(out).decode())
    """
)


def _run(path: str, datagrams: list[bytes]) -> list[dict]:
    done = subprocess.run(
        [sys.executable, "-c", CLIENT, path],
        input=b"\n".join(datagrams),
        capture_output=True,
        timeout=30,
        check=True,
    )
    return orjson.loads(done.stdout)


def test_each_answer_is_acknowledged_after_the_handler_ran(tmp_path):
    applied: list[Notification] = []
    order: list[str] = []
    lock = threading.Lock()

    def handler(note: Notification) -> None:
        with lock:
            applied.append(note)
            order.append(f"applied {note.id}")

    server = NotifyServer(tmp_path / "notify.sock", handler)
    server.start()
    try:
        notes = [
            {
                "id": i,
                "endpoint_ip": "10.0.0.7",
                "name": "api.stripe.com.",
                "ips": [f"192.0.2.{i}"],
                "ttl": 30,
                "cnames": [],
                "time_ns": 1,
            }
            for i in range(1, 4)
        ]
        replies = _run(str(server.path), [orjson.dumps(n) for n in notes])
    finally:
        server.close()
    assert replies == [{"id": 1}, {"id": 2}, {"id": 3}]
    assert [n.ips for n in applied] == [["192.0.2.1"], ["192.0.2.2"], ["192.0.2.3"]]
    assert server.stats() == {"received": 3, "applied": 3, "errors": 0, "malformed": 0}
    assert not server.path.exists()


def test_bad_datagrams_are_counted_and_the_connection_keeps_serving(tmp_path):
    def handler(note: Notification) -> None:
        if note.endpoint_ip != "10.0.0.7":
            raise ValueError(f"unknown endpoint {note.endpoint_ip}")

    server = NotifyServer(tmp_path / "notify.sock", handler)
    server.start()
    try:
        good = {"id": 9, "endpoint_ip": "10.0.0.7", "name": "a.", "ips": [], "ttl": 1}
        replies = _run(
            str(server.path),
            [
                b"\xff\x00 not json",
                orjson.dumps({"id": 5, "endpoint_ip": "10.9.9.9", "name": "a.", "ips": [], "ttl": 1}),
                orjson.dumps({"id": 6, "endpoint_ip": "10.0.0.7", "name": "a.", "ips": "x", "ttl": 1}),
                orjson.dumps(good),
            ],
        )
    finally:
        server.close()
    assert replies == [
        {"id": 5, "error": "unknown endpoint 10.9.9.9"},
        {"id": 6, "error": "ips must be a list of strings"},
        {"id": 9},
    ]
    assert server.stats() == {"received": 4, "applied": 1, "errors": 2, "malformed": 1}
