"""The access log's compact lines (templates): the node assembles the same records the proxy meant,
with the correlation the node would have worked out itself, and the proxy defines a template again
whenever the node may not know it (reconnects, dropped lines)."""

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

from hubblepy.parser.flows import Parser
from hubblepy.parser.seven import Correlator, SevenParser
from hubblepy.proxy.accesslog import (
    AccessLogWriter,
    LazyRecord,
    LogTemplate,
    RecordAssembler,
    special_headers,
    timestamp,
    whole_record,
)
from hubblepy.proxy.accesslog import header_set as accesslog_header_set


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


def test_assembler_gives_rows_as_lazy_records_with_their_correlation() -> None:
    base = _record("Response", 200, 40000)
    assembler = RecordAssembler()
    assert assembler.record(b'["T",3,' + orjson.dumps(base) + b"]") is None
    assert assembler.record(b'["H",4,{"Content-Type":["text/plain"],"X-Request-Id":[""]}]') is None
    assert assembler.record(b'["H",5,{}]') is None
    assert assembler.bad == 0
    ns = 1_767_225_600_500_000_000
    rows = [[3, ns, 1500, "ab" * 16, 4, "r 1"], [3, ns + 1, 0, "", 5, None], [3, ns, 0, "", 4, None]]
    got, keys, correlations = assembler.rows(orjson.dumps(rows))
    assert all(isinstance(r, LazyRecord) for r in got) and assembler.bad == 0
    assert keys == [(assembler.serial, 3)] * 3
    assert correlations == [(1500, "ab" * 16), (0, ""), (0, "")]
    headers = {"Content-Type": ["text/plain"], "X-Request-Id": ["r 1"]}
    want = _filled(base, "2026-01-01T00:00:00.5Z", headers)
    whole = got[0].whole()
    assert whole == want and list(whole) == list(want) and list(whole["HTTP"]) == list(want["HTTP"])
    assert got[1].whole() == _filled(base, "2026-01-01T00:00:00.500000001Z", {})
    assert got[2].whole()["HTTP"]["Headers"] == {"Content-Type": ["text/plain"], "X-Request-Id": [""]}
    # records of one template and set are separate dicts: changing one changes no other
    whole["HTTP"]["Headers"]["Content-Type"].append("x")
    assert got[0].whole() == want and base["HTTP"]["Headers"] == {}
    # a whole record with its correlation
    assert assembler.record(b"=7 - " + orjson.dumps(want)) == want
    assert assembler.key is None and assembler.correlation == (7, "")
    # lines without a correlation: the node correlates them
    assert assembler.record(orjson.dumps(want)) == want and assembler.correlation is None
    # bad rows are counted and skipped, the others of their batch kept
    bad_rows = [
        [9, ns, 0, "", 4, None],  # unknown template
        [3, ns, 0, "", 9, None],  # unknown header set
        [3, "1", 0, "", 4, None],
        [3, ns, "0", "", 4, None],
        [3, ns, 0, None, 4, None],
        [3, ns, 0, "", 4, 7],
        [3, ns, 0, "", 4],
        "row",
    ]
    got, _, correlations = assembler.rows(orjson.dumps([*bad_rows, rows[0]]))
    assert len(got) == 1 and correlations == [(1500, "ab" * 16)] and assembler.bad == len(bad_rows)
    assembler.bad = 0
    assert assembler.rows(b"[[not json") == ([], [], []) and assembler.bad == 1
    assembler.bad = 0
    for line in (
        b'["H",6,{"A":"b"}]',  # values are lists of strings
        b'["H",6,[]]',
        b"=1 - []",
        b"=1 - {",
        b"=x - {}",
        b"=1 a-b {}",
    ):
        assert assembler.record(line) is None, line
        assert assembler.correlation is None
    assert assembler.bad == 6 and 6 not in assembler.header_sets


def _headers(record: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    return [(k.encode(), v.encode()) for k, vs in record["HTTP"]["Headers"].items() for v in vs]


def test_correlator_matches_the_nodes_x_request_id_table() -> None:
    """The proxy's Correlator gives every record the (latency, trace ID) SevenParser.correlate
    would: requests remembered, responses taking them back once, repeated and missing ids, empty
    values, traceparent, and the oldest ids forgotten past the table's size."""
    size = 4
    seven = SevenParser(Parser(None, "node"), request_cache_size=size)
    correlator = Correlator(size)
    trace = "00-" + "4b" * 16 + "-" + "00f067aa0ba902b7" + "-01"
    script: list[tuple[str, int, dict[str, list[str]]]] = []
    t = 1_767_225_600_000_000_000
    for i in range(12):  # more ids than the table holds, answered late or not at all
        headers = {"X-Request-Id": [f"id-{i}"]}
        if i % 3 == 0:
            headers["Traceparent"] = [trace]
        script.append(("Request", t + i * 1000, headers))
        if i % 2:
            script.append(("Response", t + i * 1000 + 700, {"X-Request-Id": [f"id-{i - 1}"]}))
    script += [
        ("Request", t + 50_000, {"X-Request-Id": ["", "second"], "Traceparent": ["bad"]}),
        ("Request", t + 50_100, {"X-Request-Id": ["second"]}),  # the same id again
        ("Response", t + 50_900, {"X-Request-Id": ["second"]}),
        ("Response", t + 51_000, {"X-Request-Id": ["second"]}),  # already taken
        ("Request", t + 52_000, {"Host": ["api"]}),  # no id
        ("Response", t + 52_500, {}),
        ("Response", t + 53_000, {"X-Request-Id": ["id-11"]}),
    ]
    for kind, ns, headers in script:
        record = _filled(_record(kind, 200 if kind == "Response" else 0, 40000), timestamp(ns), headers)
        want = seven.correlate(record)
        request_id, traceparent = special_headers(_headers(record))
        if kind == "Request":
            got = (0, correlator.request(ns, request_id, traceparent))
        else:
            got = correlator.response(ns, request_id)
        assert got == want, (kind, ns, headers)


def test_special_headers_read_the_first_non_empty_value_of_any_case() -> None:
    assert special_headers(
        [(b"x-request-id", b""), (b"X-REQUEST-ID", b"a"), (b"X-Request-Id", b"b"), (b"traceparent", b"t")]
    ) == ("a", "t")
    assert special_headers([(b"Host", b"api")]) == ("", "")


class _Node:
    """A node's access-log socket: one RecordAssembler per connection; ``restart`` drops every
    connection and listens again (the new connection knows no template)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.records: list[dict[str, Any]] = []
        self.correlations: list[tuple[int, str] | None] = []
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
                    got, _, correlations = assembler.assemble(line)
                    with self.lock:
                        self.bad += assembler.bad
                        assembler.bad = 0
                        self.records += [whole_record(r) for r in got]
                        self.correlations += correlations

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
            headers = [(b"Host", b"api"), (b"X-Request-Id", f"id-{i // 2}".encode())]
            header_set, request_id = accesslog_header_set(headers)
            ns = 1_767_225_600_000_000_000 + (i % 60) * 1_000_000_000 + i
            writer.emit_row(template, ns, i, "ab" * 16 if i % 3 else "", header_set, request_id)
            want.append(_filled(base, timestamp(ns), {"Host": ["api"], "X-Request-Id": [f"id-{i // 2}"]}))
            if i == 150:  # a whole record between rows keeps its place
                writer.emit_bytes(orjson.dumps(want[0]))
                want.append(want[0])
        writer.emit_correlated(orjson.dumps(want[1]), 5, "")
        want.append(want[1])
        await wait_for(len(want))
        with node.lock:
            assert node.records == want
            rows = [(i, "ab" * 16 if i % 3 else "") for i in range(300)]
            assert node.correlations == [*rows[:151], None, *rows[151:], (5, "")]
            node.records.clear()
        node.restart()
        # records sent before the writer notices are lost (counted); then it reconnects and defines
        # the template again: the next records arrive whole
        lost = 0
        for attempt in range(300):
            ns = 1_767_225_660_000_000_000 + (attempt % 60) * 1_000_000_000
            stamp = timestamp(ns)
            before = writer.lost
            writer.emit_row(templates[attempt % 2], ns, 0, "", *accesslog_header_set([]))
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
