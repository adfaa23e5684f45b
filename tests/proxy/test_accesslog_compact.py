"""The access log's compact lines (templates): the node assembles the same records the proxy meant,
and the proxy defines a template again whenever the node may not know it (reconnects, dropped lines)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from hubblepy.proxy.accesslog import AccessLogWriter, LogTemplate, RecordAssembler


def _record(kind: str, code: int, port: int) -> dict[str, Any]:
    return {
        "Type": kind,
        "Timestamp": "",
        "ObservationPoint": "Ingress",
        "Verdict": "Forwarded",
        "SourceEndpoint": {
            "ID": 11,
            "IPv4": "10.0.0.1",
            "Port": port,
            "Identity": 1001,
            "Labels": ["k8s:a=b"],
        },
        "DestinationEndpoint": {"ID": 12, "IPv4": "10.0.0.2", "Port": 8080, "Identity": 1002, "Labels": []},
        "IPVersion": 0,
        "TransportProtocol": 6,
        "HTTP": {
            "Code": code,
            "Method": "GET",
            "URL": {"Host": "api"},
            "Protocol": "HTTP/1.1",
            "Headers": {},
        },
        "hubblepy": {"proxy_port": 15001},
    }


def _filled(base: dict[str, Any], stamp: str, headers: dict[str, list[str]]) -> dict[str, Any]:
    out = orjson.loads(orjson.dumps(base))
    out["Timestamp"] = stamp
    out["HTTP"]["Headers"] = headers
    return out


def test_assembler_gives_the_records_whole_lines_would() -> None:
    base = _record("Request", 0, 40000)
    assembler = RecordAssembler()
    assert assembler.record(b'["T",7,' + orjson.dumps(base) + b"]") is None
    assert assembler.bad == 0
    headers = {"Host": ["api"], "X-Request-Id": ["r1"]}
    got = assembler.record(b'[7,"2026-01-01T00:00:00.5Z",' + orjson.dumps(headers) + b"]")
    want = _filled(base, "2026-01-01T00:00:00.5Z", headers)
    assert got == want and list(got) == list(want) and list(got["HTTP"]) == list(want["HTTP"])
    assert assembler.key == (assembler.serial, 7)
    whole = orjson.dumps(want)
    assert assembler.record(whole) == want and assembler.key is None
    # records of one template are separate dicts: changing one changes no other
    again = assembler.record(b'[7,"2026-01-01T00:00:01Z",{"X-Request-Id":["r2"]}]')
    assert again is not None and again["HTTP"]["Headers"] == {"X-Request-Id": ["r2"]}
    assert got["HTTP"]["Headers"] == headers and base["HTTP"]["Headers"] == {}
    # not records: an unknown template, bad shapes, not JSON
    for line in (
        b'[8,"2026-01-01T00:00:00Z",{}]',
        b"[7,1,{}]",
        b'[7,"x",[]]',
        b'["T",9,[]]',
        b"[1]",
        b"{",
        b"3",
    ):
        assert assembler.record(line) is None
    assert assembler.bad == 7
    assert RecordAssembler().serial != assembler.serial


class _Node:
    """A node's access-log socket: one RecordAssembler per connection; ``restart`` drops every
    connection and listens again (the new connection knows no template)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.records: list[dict[str, Any]] = []
        self.bad = 0
        self.lock = threading.Lock()
        self._listen()

    def _listen(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(4)
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                self.conns.append(conn)
                threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        assembler, rest = RecordAssembler(), b""
        with contextlib.suppress(OSError):
            while data := conn.recv(65536):
                *lines, rest = (rest + data).split(b"\n")
                for line in lines:
                    record = assembler.record(line)
                    with self.lock:
                        self.bad += assembler.bad
                        assembler.bad = 0
                        if record is not None:
                            self.records.append(record)

    def restart(self) -> None:
        self.listener.close()
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        self._listen()

    def close(self) -> None:
        self.restart()
        self.listener.close()


def test_writer_defines_templates_again_after_the_node_restarts(tmp_path: Path) -> None:
    node = _Node(str(tmp_path / "access.sock"))

    async def wait_for(n: int) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with node.lock:
                if len(node.records) >= n:
                    return
            await asyncio.sleep(0.01)
        raise AssertionError(f"{len(node.records)} records, wanted {n}")

    async def main() -> tuple[int, int]:
        writer = AccessLogWriter(node.path, retry=0.0)
        await writer.start()
        request, response = _record("Request", 0, 40000), _record("Response", 200, 40000)
        templates = [LogTemplate(orjson.dumps(r)) for r in (request, response)]
        want = []
        for i in range(300):  # more than one batch
            template, base = (templates[0], request) if i % 2 == 0 else (templates[1], response)
            headers = {"X-Request-Id": [f"id-{i // 2}"]}
            stamp = f"2026-01-01T00:00:{i % 60:02d}Z"
            writer.emit_templated(template, stamp.encode(), orjson.dumps(headers))
            want.append(_filled(base, stamp, headers))
        writer.emit_bytes(orjson.dumps(want[0]))  # a whole record between compact ones
        want.append(want[0])
        await wait_for(len(want))
        with node.lock:
            assert node.records == want
            node.records.clear()
        node.restart()
        # records sent before the writer notices are lost (counted); then it reconnects and defines
        # the template again: the next records arrive whole
        lost = 0
        for attempt in range(300):
            stamp = f"2026-01-01T00:01:{attempt % 60:02d}Z"
            before = writer.lost
            writer.emit_templated(templates[attempt % 2], stamp.encode(), b"{}")
            writer._flush()
            lost += writer.lost - before
            await asyncio.sleep(0.01)
            with node.lock:
                if len(node.records) >= 2:
                    break
        await wait_for(2)
        with node.lock:
            assert node.records[-1] == _filled((request, response)[attempt % 2], stamp, {})
            assert {r["Type"] for r in node.records[-2:]} == {"Request", "Response"}
        await writer.aclose()
        return writer.sent, lost

    sent, lost = asyncio.run(main())
    node.close()
    assert node.bad == 0  # never a record of a template the connection did not know
    assert lost >= 1 and sent >= 303
