"""Indexed batches (node -> relay): framed responses with each one's time and kind beside them.

The node's indexed stream holds the bytes of its standard GetFlows stream (wire templates included)
with the times and kinds the relay would read from them; the relay's merge of indexed runs releases
what pushing the responses one by one releases; a relay reading indexed batches sends its clients
the same messages as one reading the older batched extension (fixture flows, raw datapath samples,
several nodes merged by time); malformed batches are refused.
"""

from __future__ import annotations

import random
import sys
import threading
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from liveprocs import FLOWS

from hubblepy.api.observer import observer_pb2
from hubblepy.observer import service
from hubblepy.observer.core import Observer
from hubblepy.observer.indexed import (
    Indexed,
    IndexedBatcher,
    Run,
    frame_ends,
    parse_indexed,
    scan_response,
)
from hubblepy.observer.service import BATCH_SERVICE, NodeServices
from hubblepy.observer.sources import ReplaySource
from hubblepy.observer.transport import _PREFIX, GrpcServer
from hubblepy.parser import Parser
from relay.merge import SortBuffer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "observer"))
from test_wire_templates import NOW, _base_samples, _batch, _resolver  # noqa: E402

GET_FLOWS = "/observer.Observer/GetFlows"
GET_FLOWS_INDEXED = "/hubblepy.Batch/GetFlowsIndexed"


def _framed(wire: bytes) -> bytes:
    return _PREFIX.pack(0, len(wire)) + wire


def _sample_responses() -> list[bytes]:
    """Responses of every kind, with and without a time."""
    lost = observer_pb2.GetFlowsResponse(node_name="n")
    lost.lost_events.num_events_lost = 3
    lost.time.FromNanoseconds(NOW)
    status = observer_pb2.GetFlowsResponse()
    status.node_status.node_names.append("n")
    empty_flow = observer_pb2.GetFlowsResponse()
    empty_flow.flow.SetInParent()
    return [lost.SerializeToString(), status.SerializeToString(), empty_flow.SerializeToString(), b""]


def _fixture_wires() -> list[bytes]:
    observer = Observer("fixture-node")
    ReplaySource(str(FLOWS), "fixture-node", verbatim=True, rate=0).run(observer, threading.Event())
    encoder = service.ResponseEncoder(observer_pb2.GetFlowsResponse)
    request = observer_pb2.GetFlowsRequest()
    return list(service.stream_ring(observer.flows, request, lambda: True, encoder.encode, "fixture-node"))


def test_batches_carry_each_responses_bytes_time_and_kind() -> None:
    wires = _fixture_wires()
    extra = _sample_responses()
    assert len(wires) > 100
    batcher = IndexedBatcher()
    for wire in wires[:30]:
        batcher.add(wire)
    run = wires[30:80]
    batcher.add_frames(b"".join(map(_framed, run)), np.array([scan_response(w)[0] for w in run]))
    batcher.add_frames(b"".join(map(_framed, wires[80:90])), [scan_response(w)[0] for w in wires[80:90]])
    for wire in wires[90:] + extra:
        batcher.add(wire)
    got = parse_indexed(batcher.message())
    expected = wires + extra
    assert got.wires() == expected
    assert got.times.tolist() == [scan_response(w)[0] for w in expected]
    assert list(got.kinds) == [scan_response(w)[1] for w in expected]
    assert got.frames == b"".join(map(_framed, expected))
    assert frame_ends(bytes(got.frames)) == got.ends.tolist()
    message = IndexedBatcher()
    message.add(wires[0])
    wire = message.message()
    as_protobuf = Indexed.FromString(wire)  # the batch is the protobuf message it claims to be
    assert as_protobuf.frames == _framed(wires[0]) and as_protobuf.kinds == b"\x01"
    assert len(batcher) == 0 and parse_indexed(batcher.message()).wires() == []


def _message(frames: bytes, times: bytes, kinds: bytes, ends: bytes) -> bytes:
    from hubblepy.observer.indexed import _field

    return _field(1, frames) + _field(2, times) + _field(3, kinds) + _field(4, ends)


@pytest.mark.parametrize(
    "case",
    ["flag", "length", "ends", "last end", "short times", "short ends", "not protobuf", "run sizes"],
)
def test_malformed_batches_are_refused(case: str) -> None:
    wires = [b"\x0a\x02\x08\x01", b"\x0a\x00", b"x" * 300]
    frames = b"".join(map(_framed, wires))
    ends = np.cumsum([len(w) + 5 for w in wires])
    times = np.array([1, 2, 3], dtype="<i8").tobytes()
    good = _message(frames, times, b"\x01\x01\x01", ends.astype("<u4").tobytes())
    assert parse_indexed(good).wires() == wires
    if case == "run sizes":
        with pytest.raises(ValueError):
            IndexedBatcher().add_frames(frames, [1, 2, 3], [9, 7, 300])
        batcher = IndexedBatcher()
        batcher.add_frames(frames, [1, 2, 3], [8, 8, 305])  # the right total, split wrong
        with pytest.raises(ValueError):
            parse_indexed(batcher.message())
        return
    bad = {
        "flag": lambda: _message(b"\x01" + frames[1:], times, b"\x01" * 3, ends.astype("<u4").tobytes()),
        "length": lambda: _message(
            frames[:4] + b"\x05" + frames[5:], times, b"\x01" * 3, ends.astype("<u4").tobytes()
        ),
        "ends": lambda: _message(frames, times, b"\x01" * 3, (ends + [1, 0, 0]).astype("<u4").tobytes()),
        "last end": lambda: _message(frames + b"\x00", times, b"\x01" * 3, ends.astype("<u4").tobytes()),
        "short times": lambda: _message(frames, times[:-8], b"\x01" * 3, ends.astype("<u4").tobytes()),
        "short ends": lambda: _message(frames, times, b"\x01" * 3, ends.astype("<u4").tobytes()[:-4]),
        "not protobuf": lambda: b"\xff\xff\xff",
    }[case]()
    with pytest.raises(ValueError):
        parse_indexed(bad)


def _run(items: list[tuple[int, bytes]]) -> Run:
    batcher = IndexedBatcher()
    batcher.add_frames(
        b"".join(_framed(w) for _, w in items), np.array([t for t, _ in items], dtype=np.int64)
    )
    return parse_indexed(batcher.message())


def _split(frames: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(frames):
        size = _PREFIX.unpack_from(frames, pos)[1]
        out.append(frames[pos + 5 : pos + 5 + size])
        pos += 5 + size
    return out


@pytest.mark.parametrize("seed", range(30))
def test_merging_runs_releases_what_single_pushes_release(seed: int) -> None:
    """As the relay's merge does it: an indexed run goes in whole when it can, else one by one."""
    rng = random.Random(seed)
    nodes = rng.choice((1, 1, 2, 3))
    clocks = [rng.randrange(1000) for _ in range(nodes)]
    runs: list[list[tuple[int, bytes]]] = []
    serial = 0
    for _ in range(rng.randrange(5, 40)):
        node = rng.randrange(nodes)
        items = []
        for _ in range(rng.choice((0, 1, 3, 50, 130, 400))):
            clocks[node] += rng.choice((0, 1, 2, 7)) if rng.random() > 0.03 else -rng.randrange(400)
            serial += 1
            items.append((clocks[node], b"%d:%d" % (node, serial) * rng.randrange(1, 4)))
        runs.append(items)
    max_len = rng.choice((1, 5, 100, 100, 1000))
    expected: list[bytes] = []
    reference = SortBuffer(max_len)
    got: list[bytes] = []
    merged = SortBuffer(max_len)
    whole = 0
    for items in runs:
        for time_ns, wire in items:
            out = reference.push(time_ns, wire)
            if out is not None:
                expected.append(out)
        run = _run(items)
        released = merged.push_frames(run)
        if released is not None:
            whole += 1
            got += _split(b"".join(released))
        else:
            for time_ns, wire in zip(run.times.tolist(), run.wires(), strict=True):
                out = merged.push(time_ns, wire)
                if out is not None:
                    got.append(out)
        assert got == expected  # the same responses, released at the same push
        assert len(merged) == len(reference)
    assert list(merged.drain()) == list(reference.drain())
    if nodes == 1 and seed % 3 == 0:
        assert whole  # the fast path was taken


# -- live: real gRPC servers on loopback ----------------------------------------------------------


def _serve(observer: Observer, indexed: bool, h2: bool = False) -> tuple[Any, str]:
    """A node on grpcio: with the indexed extension, or with only the older batched one; ``h2``: on
    our h2 transport as nodes serve (indexed batches handed over as buffers, not joined)."""
    services = NodeServices(
        observer, {"name": observer.node_name, "address": ""}, [], threading.Event(), framed=h2
    )
    handlers = services.handlers()
    if h2:
        assert indexed
        h2_server = GrpcServer(max_workers=8)
        h2_server.add_generic_rpc_handlers(handlers)
        h2_port = h2_server.add_insecure_port("127.0.0.1:0")
        h2_server.start()
        return h2_server, f"127.0.0.1:{h2_port}"
    if not indexed:
        batch = {
            "GetFlows": grpc.unary_stream_rpc_method_handler(
                services.get_flows_batched, request_deserializer=observer_pb2.GetFlowsRequest.FromString
            ),
            "GetFlowsJSON": grpc.unary_stream_rpc_method_handler(
                services.get_flows_json, request_deserializer=observer_pb2.GetFlowsRequest.FromString
            ),
        }
        handlers = [h for h in handlers if h.service_name() != BATCH_SERVICE]
        handlers.append(grpc.method_handlers_generic_handler(BATCH_SERVICE, batch))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers(handlers)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"127.0.0.1:{port}"


def _raw_observer(name: str = "node-1", copies: int = 40, start: int = NOW) -> Observer:
    observer = Observer(name, 65535)
    observer.use_parser(Parser(_resolver(), name))
    samples = _base_samples()
    for i in range(copies):
        observer.publish_records(_batch(samples), start + i * 1_000_003)
    return observer


def _request(verdict: str | None = None, **kwargs: Any) -> Any:
    request = observer_pb2.GetFlowsRequest(**kwargs)
    if verdict:
        request.whitelist.add().verdict.append(verdict)
    return request


@pytest.mark.parametrize("h2", [False, True], ids=["grpcio", "h2"])
@pytest.mark.parametrize("verdict", [None, "DROPPED", "FORWARDED"])
def test_a_nodes_indexed_stream_holds_its_getflows_stream(verdict: str | None, h2: bool) -> None:
    observer = _raw_observer(copies=200 if verdict is None else 40)  # unfiltered: batches grow
    server, address = _serve(observer, indexed=True, h2=h2)
    try:
        channel = grpc.insecure_channel(address, options=[("grpc.max_receive_message_length", 64 << 20)])
        plain = channel.unary_stream(GET_FLOWS, observer_pb2.GetFlowsRequest.SerializeToString, None)
        indexed = channel.unary_stream(
            GET_FLOWS_INDEXED, observer_pb2.GetFlowsRequest.SerializeToString, None
        )
        request = _request(verdict, number=(1 << 64) - 1)
        templates = service.flow_templates(observer, None, None, None)
        assert templates is not None
        hits = templates.hits
        for _ in range(2):  # a first read (templates made) and a second (cached bytes, templates)
            runs = [parse_indexed(m) for m in indexed(request)]
            wires = [w for run in runs for w in run.wires()]
            assert wires == list(plain(request))
            assert len(wires) > 100
            # batches grow from a small first one (of INDEXED_FLUSH_BYTES and one run or response more)
            sizes = [len(run.frames) for run in runs]
            assert sizes[0] < 2 * service.INDEXED_FLUSH_BYTES
            assert max(sizes) <= 2 * service.INDEXED_MAX_BYTES
            if verdict is None:
                assert sum(sizes) > 4 * service.INDEXED_FLUSH_BYTES << service.INDEXED_RAMP
                assert max(sizes) > 2 * sizes[0]
                assert sizes[-1] < sum(sizes) / 4
            assert [t for run in runs for t in run.times.tolist()] == [scan_response(w)[0] for w in wires]
            assert [k for run in runs for k in run.kinds] == [scan_response(w)[1] for w in wires]
        assert templates.hits > hits  # the indexed stream used the wire templates
        channel.close()
    finally:
        server.stop(0)


def _relayed(procs: Any, peers: list[str], request: Any, *extra: str) -> list[bytes]:
    """The GetFlows messages a relay with these peers sends (node status events left out)."""
    relay = procs.relay("--peers", ",".join(peers), *extra)
    channel = grpc.insecure_channel(relay.address, options=[("grpc.max_receive_message_length", 64 << 20)])
    call = channel.unary_stream(GET_FLOWS, observer_pb2.GetFlowsRequest.SerializeToString, None)
    out = [w for w in call(request, timeout=60) if scan_response(w)[1] != 2]
    channel.close()
    relay.kill()
    return out


def _direct_count(address: str, request: Any) -> int:
    """Responses of a node's own GetFlows stream."""
    channel = grpc.insecure_channel(address, options=[("grpc.max_receive_message_length", 64 << 20)])
    call = channel.unary_stream(GET_FLOWS, observer_pb2.GetFlowsRequest.SerializeToString, None)
    count = sum(1 for _ in call(request, timeout=60))
    channel.close()
    return count


def _fixture_observer(name: str, lines: list[bytes], tmp: Path) -> Observer:
    path = tmp / f"{name}.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    observer = Observer(name)
    ReplaySource(str(path), name, verbatim=True, rate=0).run(observer, threading.Event())
    return observer


def test_the_relay_sends_what_it_sent_from_the_older_batches(procs: Any, tmp_path: Path) -> None:
    lines = FLOWS.read_bytes().splitlines()
    cases = {
        "fixture flows, one node": ([_fixture_observer("fixture", lines, tmp_path)], ()),
        "raw samples, one node": ([_raw_observer("raw")], ()),
        "raw samples, one node on h2": ([_raw_observer("raw-h2")], ()),
        # dealt round-robin over three nodes, a full sort: the merge is by time across nodes
        "fixture flows, three nodes": (
            [_fixture_observer(f"n{i}", lines[i::3], tmp_path) for i in range(3)],
            ("--sort-buffer-len-max", "100000"),
        ),
        "raw samples, two nodes": (
            [_raw_observer("r0", 30, NOW), _raw_observer("r1", 30, NOW + 500_001)],
            ("--sort-buffer-len-max", "100000"),
        ),
    }
    servers = []
    try:
        for title, (observers, extra) in cases.items():
            new_peers, old_peers = [], []
            for observer in observers:
                for indexed, peers in ((True, new_peers), (False, old_peers)):
                    server, address = _serve(observer, indexed, h2=indexed and title.endswith("on h2"))
                    servers.append(server)
                    peers.append(f"{observer.node_name}={address}")
            for request in (
                _request(number=(1 << 64) - 1),
                _request("DROPPED", number=(1 << 64) - 1),
                _request(number=50),
            ):
                new = _relayed(procs, new_peers, request, *extra)
                old = _relayed(procs, old_peers, request, *extra)
                assert new == old, title
                if request.number > 50:
                    assert len(new) > 100 or request.whitelist, title
                if len(observers) > 1:
                    times = [scan_response(w)[0] for w in new]
                    assert times == sorted(times), title
                if request.number > 50 and not request.whitelist:  # every node's every flow
                    assert len(new) == sum(_direct_count(p.split("=")[1], request) for p in new_peers), title
    finally:
        for server in servers:
            server.stop(0)
