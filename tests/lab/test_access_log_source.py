"""The proxies' access-log socket as a flow source (AccessLogSource) with real unix sockets."""

from __future__ import annotations

import socket
import threading
import time

import orjson
import pytest

from hubblepy.lab.source import AccessLogSource


class Sink:
    node_name = "lab-node"

    def __init__(self) -> None:
        self.batches: list[list[tuple[int, dict]]] = []
        self.cond = threading.Condition()

    def publish_flows(self, flows):
        with self.cond:
            self.batches.append(list(flows))
            self.cond.notify_all()

    def flows(self) -> list[dict]:
        return [f for batch in self.batches for _, f in batch]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.flows()) < count and time.monotonic() < deadline:
                self.cond.wait(0.1)
        return self.flows()


def decode(record: dict, now_ns: int) -> dict | None:
    if record.get("Type") == "Skip":
        return None
    return {"l7": {"type": record["Type"].upper()}, "url": record.get("HTTP", {}).get("URL", "")}


def record(kind: str, url: str) -> bytes:
    return orjson.dumps({"Type": kind, "HTTP": {"URL": url}}) + b"\n"


def decode_batch(records: list[dict], now_ns: int) -> list[dict]:
    return [f for f in (decode(r, now_ns) for r in records) if f is not None]


@pytest.mark.parametrize("batched", [False, True], ids=["per-record", "batch-decoder"])
def test_records_from_several_proxies_become_flows_and_bad_lines_are_counted(tmp_path, batched):
    path = tmp_path / "access.sock"
    source = AccessLogSource(path, decode, decode_batch=decode_batch if batched else None)
    sink = Sink()
    stop = threading.Event()
    t = threading.Thread(target=source.run, args=(sink, stop), daemon=True)
    t.start()
    deadline = time.monotonic() + 10
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    try:
        a = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        a.connect(str(path))
        b = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        b.connect(str(path))
        line = record("Request", "http://api/one")
        a.sendall(line[:10])  # a record split over two writes
        time.sleep(0.2)
        a.sendall(line[10:] + b"not json\n" + b"[1, 2]\n" + record("Skip", "") + b"\n")
        b.sendall(record("Response", "http://api/two"))
        flows = sink.wait_for(2)
        assert sorted(f["url"] for f in flows) == ["http://api/one", "http://api/two"]
        b.close()  # a proxy restarts: its new connection is served too
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.connect(str(path))
        c.sendall(record("Request", "http://api/three").rstrip(b"\n"))  # last line without newline
        c.close()
        flows = sink.wait_for(3)
        assert [f["url"] for f in flows][-1] == "http://api/three"
        assert (source.published, source.malformed, source.skipped) == (3, 2, 1)
        a.close()
    finally:
        stop.set()
        t.join(5)
    assert not t.is_alive()
    assert not path.exists()


def test_records_go_into_the_ring_undecoded_and_read_as_the_eager_flows(tmp_path):
    from hubblepy.observer.core import Observer
    from hubblepy.parser import Parser, StaticResolver

    def http(kind: str, stamp: str, **extra: object) -> dict:
        return {
            "Type": kind,
            "Timestamp": stamp,
            "IPVersion": 1,
            "TransportProtocol": 6,
            "Verdict": "Forwarded",
            "ObservationPoint": "Ingress",
            "SourceEndpoint": {"ID": 0, "IPv4": "10.0.0.1", "Port": 40000, "Identity": 2},
            "DestinationEndpoint": {"ID": 12, "IPv4": "10.0.0.2", "Port": 8080, "Identity": 1002},
            "HTTP": {
                "Method": "GET",
                "URL": "http://api/x",
                "Protocol": "HTTP/1.1",
                "Headers": {"X-Request-Id": ["r1"]},
                **extra,
            },
        }

    records = [http("Request", "2024-03-01T00:00:00Z"), http("Response", "2024-03-01T00:00:00.25Z", Code=200)]
    eager = Parser(StaticResolver(), "lab-node").seven.decode_batch(records, 1)
    seven = Parser(StaticResolver(), "lab-node").seven
    path = tmp_path / "access.sock"
    source = AccessLogSource(path, seven.decode, decode_batch=seven.decode_batch, seven=seven)
    observer = Observer("lab-node")
    stop = threading.Event()
    t = threading.Thread(target=source.run, args=(observer, stop), daemon=True)
    t.start()
    try:
        deadline = time.monotonic() + 10
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as proxy:
            proxy.connect(str(path))
            proxy.sendall(b"".join(orjson.dumps(r) + b"\n" for r in records))
        while observer.seen_flows < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        ring = observer.flows
        assert ring.kind[0] != 0  # stored undecoded
        got = [e.flow for _, e in ring.read_many([1, 0])[0]]  # the response read first
        strip = ("uuid", "time")
        assert [{k: v for k, v in f.items() if k not in strip} for f in got] == [
            {k: v for k, v in f.items() if k not in strip} for f in eager[::-1]
        ]
        assert got[0]["l7"]["latency_ns"] == "250000000"
        assert source.published == 2
    finally:
        stop.set()
        t.join(5)
