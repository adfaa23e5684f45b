"""GetFlows bytes made from shape templates are the ordinary path's bytes (decode, then encode), for
every upstream fixture event, for thousands of mutated samples, for every request form, and on a
live node; a shape is templated the second time it is seen; a lapped reader sends nothing stale."""

from __future__ import annotations

import random
import struct
import sys
from pathlib import Path
from typing import Any

import grpc
import grpc.experimental
import numpy as np
import orjson
import pytest

from hubblepy.api.observer import observer_pb2
from hubblepy.monitor.reader import RECORD_PAD, RecordBatch
from hubblepy.observer import service, wiretemplates
from hubblepy.observer.core import Observer
from hubblepy.observer.service import ResponseEncoder, stream_ring
from hubblepy.parser import EndpointInfo, Parser, PolicyMatch, StaticResolver
from hubblepy.parser import encode as enc

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "parser"))
from parser_fixture_events import event_for, resolver_for  # noqa: E402

NOW = 1_700_000_000_123_456_789
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "flows.jsonl"


def _batch(samples: list[bytes]) -> RecordBatch:
    data = bytearray()
    offsets, lengths = [], []
    for raw in samples:
        offsets.append(len(data))
        lengths.append(len(raw))
        data += raw + bytes(-len(raw) % 8)
    data += bytes(RECORD_PAD)
    n = len(samples)
    return RecordBatch(
        bytes(data),
        np.asarray(offsets, dtype=np.int64),
        np.asarray(lengths, dtype=np.uint32),
        np.zeros(n, dtype=np.uint16),
        [],
    )


def _observer(resolver: StaticResolver, capacity: int = 65535, **parser_options: Any) -> Observer:
    observer = Observer("node-1", capacity)
    observer.use_parser(Parser(resolver, "node-1", **parser_options))
    return observer


def _stream(observer: Observer, request: Any, templates: bool) -> bytes:
    """The framed GetFlows stream as the node sends it, with or without templates."""
    ring = observer.flows
    frames = ring.decoder.wire_templates() if templates else None
    if templates:
        assert frames is not None
    encoder = ResponseEncoder(observer_pb2.GetFlowsResponse)
    responses = stream_ring(
        ring, request, lambda: True, encoder.encode, "node-1", idle_marker=True, frames=frames
    )
    return b"".join(service.flows_on_wire(responses, True))


def _both(observer: Observer, request: Any) -> tuple[bytes, bytes]:
    """The stream with templates (twice: the second read also sends the bytes the first one left
    in the ring cache), and the ordinary stream with an empty cache."""
    fast = _stream(observer, request, templates=True)
    again = _stream(observer, request, templates=True)
    observer.flows._cache[:] = [None] * len(observer.flows._cache)  # the ordinary path decodes anew
    plain = _stream(observer, request, templates=False)
    assert _without_lost_times(again) == _without_lost_times(fast)
    return again, plain


def _without_lost_times(stream: bytes) -> list[bytes]:
    """The stream's responses, LostEvents without their time (they are stamped when sent)."""
    out = []
    while stream:
        size = int.from_bytes(stream[1:5], "big")
        message = observer_pb2.GetFlowsResponse.FromString(stream[5 : 5 + size])
        if message.HasField("lost_events"):
            message.ClearField("time")
            out.append(message.SerializeToString())
        else:
            out.append(stream[5 : 5 + size])
        stream = stream[5 + size :]
    return out


ALL = observer_pb2.GetFlowsRequest(number=(1 << 64) - 1)


def _fixture_cases() -> list[tuple[bytes, StaticResolver, dict]]:
    cases = []
    for line in FIXTURES.read_bytes().splitlines():
        flow = orjson.loads(line)["flow"]
        if flow["event_type"]["type"] not in (1, 3, 4, 5):
            continue
        for source in {flow.get("source", {}).get("ID", 0), flow.get("destination", {}).get("ID", 0)}:
            cases.append((event_for(flow, source), resolver_for(flow), flow))
    return cases


def test_every_fixture_event_gives_the_ordinary_bytes() -> None:
    cases = _fixture_cases()
    assert len(cases) > 150
    served = 0
    for sample, resolver, flow in cases:
        observer = _observer(resolver, node_labels=flow.get("node_labels", ()), emitter_version="1.19.4")
        for i in range(4):  # seen once, then templated, then served from the template
            observer.publish_records(_batch([sample]), NOW + i * 1_000_003 + (i << 28))
        fast, plain = _both(observer, ALL)
        assert plain.count(b"\x00", 0, 1) == 1 and len(plain) > 100
        assert fast == plain, orjson.dumps(flow).decode()
        served += observer.flows.decoder.wire_templates().hits
    assert served > 300  # most fixture events have a template (capture events do not)


def _resolver() -> StaticResolver:
    r = StaticResolver()
    pods = (("frontend", 11, 1001, "10.0.0.1"), ("api", 12, 1002, "10.0.0.2"), ("db", 13, 1003, "fd00::3"))
    for name, ep_id, identity, ip in pods:
        r.add_endpoint(
            EndpointInfo(
                id=ep_id,
                identity=identity,
                namespace="payments",
                pod_name=name,
                labels=(f"k8s:app={name}", "k8s:io.kubernetes.pod.namespace=payments"),
                ips=(ip,),
            )
        )
    r.set_interface(7, "lxc7")
    r.set_service("10.0.0.2", 8080, "api", "payments")
    r.set_dns_names(11, "10.0.0.2", ["api.payments.svc"])
    return r


def _tcp_with_options(sport: int, dport: int, flags: int, options: bytes, payload: bytes = b"") -> bytes:
    doff = (20 + len(options)) // 4
    return struct.pack("!HHIIBBHHH", sport, dport, 7, 9, doff << 4, flags, 100, 0, 0) + options + payload


SYN_OPTIONS = bytes.fromhex("020405b40402080a000000010000000001030307")
TS_OPTIONS = bytes.fromhex("0101080a0000000200000001")


def _base_samples() -> list[bytes]:
    """One sample of each keyed layout and of some that are not keyed."""
    v4 = enc.ipv4("10.0.0.1", "10.0.0.2", 6, _tcp_with_options(40000, 8080, enc.TCP_SYN, SYN_OPTIONS))
    v4_ts = enc.ipv4("10.0.0.2", "10.0.0.1", 6, _tcp_with_options(8080, 40000, 0x18, TS_OPTIONS, b"data"))
    udp = enc.ipv4("10.0.0.1", "10.0.0.2", 17, enc.udp(5353, 53, b"query"))
    icmp = enc.ipv4("10.0.0.1", "10.0.0.2", 1, enc.icmp4(8))
    v6 = enc.ipv6("fd00::3", "fd00::4", 6, enc.tcp(5432, 41000, enc.TCP_ACK))
    icmp6 = enc.ipv6("fd00::3", "fd00::4", 58, enc.icmp6(128))
    out = []
    for packet in (v4, v4_ts, udp, icmp):
        eth = enc.ethernet(packet)
        out += [
            enc.trace_event(eth, version=v, obs_point=p, source=11, src_label=1001, dst_label=1002, ifindex=7)
            for v, p in ((0, 5), (1, 0), (2, 3))
        ]
        out.append(enc.trace_event(packet, version=1, source=11, flags=0x02, orig_ip="10.9.9.9", reason=1))
        out += [
            enc.drop_event(
                eth, version=v, reason=133, source=12, src_label=1001, dst_label=1002, line=7, file=1
            )
            for v in (0, 2, 3)
        ]
        out += [
            enc.policy_verdict_event(eth, layout=40, source=12, remote_label=1001, dst_port=8080, cookie=1),
            enc.policy_verdict_event(eth, layout=32, source=12, remote_label=1001, verdict=-133, flags=2),
            enc.policy_verdict_event(packet, layout=40, source=12, remote_label=1001, flags=0x81, pad=4),
        ]
    for packet in (v6, icmp6):
        out.append(enc.trace_event(enc.ethernet(packet, 0x86DD), source=13, src_label=1003))
        out.append(enc.trace_event(packet, version=1, source=13, flags=0x03, orig_ip="fd00::9"))
        out.append(enc.policy_verdict_event(packet, layout=40, source=13, flags=0x85))
    out.append(enc.capture_event(enc.ethernet(v4)))  # not keyed: the ordinary path
    out.append(enc.trace_sock_event(cgroup_id=5))
    return out


def _mutate(rng: random.Random, sample: bytes) -> bytes:
    data = bytearray(sample)
    for _ in range(rng.choice((1, 1, 2, 3))):
        how = rng.random()
        if how < 0.6:  # any byte: header fields, lengths, addresses, flags, options, payload
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif how < 0.75:  # a bit of the first 120 bytes
            at = rng.randrange(min(len(data), 120))
            data[at] ^= 1 << rng.randrange(8)
        elif how < 0.9 and len(data) > 1:  # cut short
            del data[rng.randrange(1, len(data)) :]
        else:  # trailing bytes (perf padding or garbage)
            data += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 9)))
    return bytes(data)


@pytest.mark.parametrize("seed", range(4))
def test_mutated_samples_give_the_ordinary_bytes(seed: int) -> None:
    rng = random.Random(seed)
    base = _base_samples()
    samples = []
    for _ in range(1500):
        mutated = _mutate(rng, rng.choice(base))
        if mutated[:1] in (b"\x02", b""):  # debug messages and empty samples are not flows
            continue
        samples += [mutated] * rng.choice((1, 2, 3))  # shapes seen once, twice (templated), more
        if rng.random() < 0.5:
            samples.append(rng.choice(base))
    rng.shuffle(samples)
    observer = _observer(_resolver())
    for i in range(0, len(samples), 97):
        observer.publish_records(_batch(samples[i : i + 97]), NOW + i * 7_919)
    fast, plain = _both(observer, ALL)
    assert fast == plain
    assert observer.flows.decoder.wire_templates().hits > len(samples) // 4


def test_unmutated_layouts_are_all_templated() -> None:
    base = _base_samples()
    observer = _observer(_resolver())
    for i in range(3):
        observer.publish_records(_batch(base), NOW + i)
    templates = observer.flows.decoder.wire_templates()
    fast, plain = _both(observer, ALL)
    assert fast == plain
    # the third copy of every keyed sample is served from its template; capture and sock are not keyed
    assert templates.hits >= len(base) - 2
    assert templates.built == len(base) - 2


def test_uuid_text_is_the_decoders_uuids() -> None:
    observer = _observer(_resolver())
    decoder = observer.flows.decoder
    seqs = [0, 1, 2, 65535, 1 << 40, (1 << 63) + 5]
    text = decoder.uuid_text(np.asarray(seqs, dtype=np.uint64))
    assert [text[i : i + 36].decode() for i in range(0, len(text), 36)] == decoder.uuids(seqs)


def _request(**kwargs: Any) -> Any:
    return observer_pb2.GetFlowsRequest(**kwargs)


def _stamp(ns: int) -> dict[str, int]:
    return {"seconds": ns // 10**9, "nanos": ns % 10**9}


@pytest.mark.parametrize(
    "request_args",
    [
        {"number": 5},
        {"number": 1},
        {"first": True, "number": 7},
        {"first": True},
        {"since": _stamp(NOW + 30)},
        {"until": _stamp(NOW + 30), "first": True},
        {"until": _stamp(NOW + 30), "number": 3},
        {"since": _stamp(NOW + 10), "until": _stamp(NOW + 50), "number": 6, "first": True},
    ],
)
def test_request_forms_give_the_ordinary_stream(request_args: dict[str, Any]) -> None:
    base = _base_samples()[:-1]  # the trace-sock event does not decode (unknown cgroup)
    observer = _observer(_resolver())
    for i in range(6):
        observer.publish_records(_batch(base[i::3]), NOW + 10 * i)
        if i == 2:
            observer.publish_lost("PERF_EVENT_RING_BUFFER", 3, 1)  # a LostEvent amid raw samples
            observer.publish_flows([(NOW + 25, {"time": "2023-11-14T22:13:20.123456814Z", "uuid": "u"})])
    fast, plain = _both(observer, _request(**request_args))

    assert _without_lost_times(fast) == _without_lost_times(plain)
    assert plain


def test_endpoints_are_named_as_they_were_when_captured() -> None:
    resolver = _resolver()
    observer = _observer(resolver)
    sample = _base_samples()[0]
    for i in range(3):
        observer.publish_records(_batch([sample]), NOW + i)
    resolver.remove_endpoint(11)
    resolver.add_endpoint(
        EndpointInfo(id=21, identity=2001, namespace="other", pod_name="new", ips=("10.0.0.1",))
    )
    for i in range(3):
        observer.publish_records(_batch([sample]), NOW + 10 + i)
    fast, plain = _both(observer, ALL)
    assert fast == plain
    assert fast.count(b"frontend") and fast.count(b"new")


@pytest.mark.parametrize("in_runs", [True, False], ids=["runs", "scan-order-join"])
@pytest.mark.parametrize("arrangement", ["grouped", "alternating"])
def test_layouts_in_runs_or_alternating_with_cached_samples_give_the_ordinary_bytes(
    monkeypatch: pytest.MonkeyPatch, in_runs: bool, arrangement: str
) -> None:
    """A scan's templated responses are written into one buffer run by run of one layout, or made
    per layout and joined in scan order; either way, with samples an earlier reader left in the ring
    cache among them, the bytes and their order are the ordinary path's."""
    monkeypatch.setattr(wiretemplates, "RUNS_MIN", 1 << 30 if in_runs else 0)
    monkeypatch.setattr(wiretemplates, "RUNS_SHARE", 1 if in_runs else 1 << 30)
    base = _base_samples()[:-1]  # the trace-sock event does not decode (unknown cgroup)
    batch = [s for s in base for _ in range(5)] if arrangement == "grouped" else base * 5
    observer = _observer(_resolver())
    for i in range(4):
        observer.publish_records(_batch(batch), NOW + 1_000_003 * i)  # time fields of several sizes
    ring = observer.flows
    encoder = ResponseEncoder(observer_pb2.GetFlowsResponse)
    for _, entry in ring.read_many(list(range(ring.oldest_seq, ring.next_seq, 7)))[0]:
        encoder.encode(entry)  # an earlier reader's bytes, in the ring cache
    templates = ring.decoder.wire_templates()
    fast = _stream(observer, ALL, templates=True)
    assert templates.hits > len(batch)
    ring._cache[:] = [None] * len(ring._cache)
    plain = _stream(observer, ALL, templates=False)
    assert fast == plain


def test_a_reader_lapped_while_templating_sends_nothing_stale() -> None:
    observer = _observer(_resolver(), capacity=63)
    base = _base_samples()[:20]
    for i in range(3):
        observer.publish_records(_batch(base), NOW + i)
    ring = observer.flows
    real = service.plan_frames
    calls: list[int] = []

    def lapping(ring_: Any, templates: Any, seqs: list[int], exact: Any = None) -> Any:
        plan = real(ring_, templates, seqs, exact)
        if not calls:  # the writer overwrites the first 7 entries after the reader read them
            observer.publish_records(_batch(base[:10]), NOW + 10)
        calls.append(seqs[0])
        return plan

    service.plan_frames = lapping
    try:
        start, end = ring.oldest_seq, ring.next_seq
        items = list(
            service.select_entries(
                ring, _request(first=True), lambda: True, frames=ring.decoder.wire_templates()
            )
        )
    finally:
        service.plan_frames = real
    assert items[0] == 7 and calls == [start, start + 7]
    assert all(isinstance(item, bytes) for item in items[1:])
    # what follows the LostEvent is what the ring holds now, up to where the request began
    encoder = ResponseEncoder(observer_pb2.GetFlowsResponse)
    ring._cache[:] = [None] * len(ring._cache)
    kept = ring.read_many(range(start + 7, end))[0]
    assert b"".join(items[1:]) == b"".join(service.flows_on_wire((encoder.encode(e) for _, e in kept), True))


def test_templates_only_for_unfiltered_or_verdict_filtered_unmasked_requests_on_the_h2_transport() -> None:
    """A live node: an upstream-style reader gets the ordinary bytes, unfiltered and with a verdict
    filter (templates serve both); other filters and masked requests never use templates."""
    from hubblepy.observer.server import ObserverServer, ServerConfig

    observer = _observer(_resolver())
    base = _base_samples()
    for i in range(3):
        observer.publish_records(_batch(base), NOW + i)
    server = ObserverServer(observer, ServerConfig(listen_address="127.0.0.1:0"))
    server.start()
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{server.tcp_port}")
        call = channel.unary_stream(
            "/observer.Observer/GetFlows",
            request_serializer=observer_pb2.GetFlowsRequest.SerializeToString,
            response_deserializer=None,
        )
        got = list(call(ALL, timeout=30))
        templates = observer.flows.decoder.wire_templates()
        assert templates.hits >= len(base) - 2
        hits = templates.hits
        filtered = observer_pb2.GetFlowsRequest(number=(1 << 64) - 1)
        filtered.whitelist.add().verdict.append(2)  # DROPPED
        drops = list(call(filtered, timeout=30))
        assert drops and templates.hits > hits
        hits = templates.hits
        by_pod = observer_pb2.GetFlowsRequest(number=(1 << 64) - 1)
        by_pod.whitelist.add(verdict=[2], source_pod=["payments/api"])
        assert list(call(by_pod, timeout=30))
        masked = observer_pb2.GetFlowsRequest(number=3)
        masked.field_mask.paths.append("flow.verdict")
        assert list(call(masked, timeout=30))
        assert templates.hits == hits
        channel.close()
    finally:
        server.stop_event.set()
        server.server.stop(0).wait(5)
    observer.flows._cache[:] = [None] * len(observer.flows._cache)
    encoder = ResponseEncoder(observer_pb2.GetFlowsResponse)
    ring = observer.flows
    entries = [entry for _, entry in ring.read_many(range(ring.oldest_seq, ring.next_seq))[0]]
    plain = [encoder.encode(entry) for entry in entries]
    assert got == plain
    assert drops == [
        wire for wire, e in zip(plain, entries, strict=True) if e.flow.get("verdict") == "DROPPED"
    ]


def test_a_resolver_without_snapshots_gets_no_templates() -> None:
    class Live:
        generation = 0

        def __getattr__(self, name: str) -> Any:
            if name == "snapshot":
                raise AttributeError(name)
            return getattr(_resolver(), name)

    observer = Observer("node-1")
    observer.use_parser(Parser(Live(), "node-1"))  # type: ignore[arg-type]
    assert observer.flows.decoder.wire_templates() is None


def test_tcp_option_check_matches_the_parser() -> None:
    from hubblepy.parser.packet import _options_valid

    rng = random.Random(5)
    rows, lengths, expected = [], [], []
    for _ in range(3000):
        length = rng.choice((4, 8, 12, 20, 40))
        if rng.random() < 0.5:
            opts = bytes(rng.choice((0, 1, 1, 2, 3, 4, 8, 30, 255)) for _ in range(length))
        else:  # Linux's SYN or timestamp options (the check's shortcuts), one byte changed or not
            opts = bytearray(
                (rng.choice((SYN_OPTIONS + TS_OPTIONS, TS_OPTIONS + SYN_OPTIONS)) + bytes(40))[:length]
            )
            if rng.random() < 0.7:
                opts[rng.randrange(length)] = rng.randrange(12)
            opts = bytes(opts)
        rows.append(opts.ljust(40, b"\x00"))
        lengths.append(length)
        expected.append(_options_valid(opts, 0, length, 2))
    got = wiretemplates._tcp_options_valid(
        np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(-1, 40), np.asarray(lengths, dtype=np.int64)
    )
    assert got.tolist() == expected
    assert sum(expected) > 300 and sum(expected) < 2700


def test_many_new_shapes_pause_templating_and_change_nothing() -> None:
    """Many new shapes (here a new peer address every two samples; ports are holes): after two
    scans in a row that had to make templates for most of their samples, none is made for a
    while; the bytes stay the ordinary ones."""
    samples = []
    for port in range(20000, 24800):  # 4800 shapes, each twice in a row: scans of 4096 hold 2048 shapes
        peer = f"10.1.{port >> 8 & 255}.{port & 255}"
        packet = enc.ethernet(enc.ipv4("10.0.0.1", peer, 6, enc.tcp(port, 8080, enc.TCP_SYN)))
        samples += [enc.trace_event(packet, source=11, src_label=1001, dst_label=1002)] * 2
    observer = _observer(_resolver())
    for i in range(0, len(samples), 1000):
        observer.publish_records(_batch(samples[i : i + 1000]), NOW + i)
    templates = observer.flows.decoder.wire_templates()
    fast = _stream(observer, ALL, templates=True)
    assert templates.built == 4096  # the first two scans' shapes, none in the third
    assert templates.cooldown == wiretemplates.COOLDOWN_SCANS - 1
    observer.flows._cache[:] = [None] * len(observer.flows._cache)
    assert fast == _stream(observer, ALL, templates=False)


def test_concurrent_readers_while_the_writer_publishes_and_prunes() -> None:
    """Readers template side by side while the writer laps them and the resolver changes (its
    snapshots, and their templates, are pruned): every response parses, nothing raises."""
    import threading

    resolver = _resolver()
    observer = _observer(resolver, capacity=255)
    base = _base_samples()
    errors: list[str] = []
    counts = [0, 0]

    def read(k: int) -> None:
        try:
            for _ in range(20):
                stream = _stream(observer, _request(first=True), templates=True)
                counts[k] += len(_without_lost_times(stream))
        except BaseException:  # noqa: BLE001 - reported by the test
            import traceback

            errors.append(traceback.format_exc())

    for i in range(5):
        observer.publish_records(_batch(base), NOW - 10 + i)
    readers = [threading.Thread(target=read, args=(k,)) for k in range(2)]
    for t in readers:
        t.start()
    i = 0
    while any(t.is_alive() for t in readers):
        observer.publish_records(_batch(base), NOW + i)
        if i % 7 == 0:
            resolver.set_interface(7, f"lxc{i}")  # a new snapshot
        i += 1
    for t in readers:
        t.join()
    assert not errors, errors[0]
    assert counts[0] and counts[1]


def test_templates_of_older_snapshots_stay_bounded() -> None:
    observer = _observer(_resolver())
    templates = observer.flows.decoder.wire_templates()
    limit = wiretemplates.TEMPLATE_LIMIT
    templates._tables = {
        0: {i: (b"", None) for i in range(limit // 2)},
        1: {i: (b"", None) for i in range(limit)},
    }
    keys = np.zeros((2, wiretemplates.KEY_BYTES), dtype=np.uint8)
    templates.lookup(keys, 2, lambda i: None)  # a third snapshot appears
    assert sorted(templates._tables) == [1, 2]


BOUNDARY_PORTS = (0, 1, 127, 128, 129, 16383, 16384, 16385, 40000, 65535)


def _port_samples(ports: tuple[int, ...]) -> list[bytes]:
    """For each source port and each of a few destination ports: TCP (with options, plain, and no
    flags at all) and UDP over IPv4 and IPv6, as trace, drop and policy verdict events; one peer
    (10.0.0.2) has a service on port 8080 and one (fd00::4) a service on any port."""
    out = []
    for sport in ports:
        for dport in (0, 127, 128, 8080, 16384, 65535):
            layers = (
                enc.ipv4("10.0.0.1", "10.0.0.2", 6, _tcp_with_options(sport, dport, 0x18, TS_OPTIONS, b"x")),
                enc.ipv4("10.0.0.2", "10.0.0.1", 6, enc.tcp(dport, sport, enc.TCP_ACK)),
                enc.ipv4("10.0.0.1", "10.0.0.9", 6, enc.tcp(sport, dport, 0)),
                enc.ipv4("10.0.0.1", "10.0.0.2", 17, enc.udp(sport, dport, b"q")),
                enc.ipv6("fd00::3", "fd00::4", 6, enc.tcp(sport, dport, enc.TCP_SYN)),
                enc.ipv6("fd00::3", "fd00::5", 17, enc.udp(sport, dport)),
            )
            for packet in layers:
                eth = enc.ethernet(packet, 0x86DD if packet[0] >> 4 == 6 else 0x0800)
                out.append(enc.trace_event(eth, source=11, src_label=1001, dst_label=1002, ifindex=7))
                out.append(enc.drop_event(eth, reason=133, source=12, src_label=1001, dst_label=1002))
                out.append(
                    enc.policy_verdict_event(eth, source=12, remote_label=1001, dst_port=dport, cookie=1)
                )
    return out


@pytest.mark.parametrize("with_services", [True, False])
def test_port_holes_across_varint_boundaries_give_the_ordinary_bytes(with_services: bool) -> None:
    """Ports are holes of the templates: ports whose varints take 0 (left out), 1, 2 or 3 bytes, so
    the l4 message's, the flow's and the response's lengths move (and the flow's length varint
    crosses 127/128 for some); with services on some addresses (their ports stay in the key)."""
    resolver = _resolver()
    if with_services:
        resolver.set_service("fd00::4", 0, "any-port", "payments")
    else:
        resolver.services.clear()
    rule = {"name": "low-ports", "namespace": "payments", "labels": ["k8s:policy=low-ports"], "revision": "2"}

    def explain(cookie: int, endpoint: int, ingress: bool, remote: int, proto: int, dport: int) -> Any:
        return PolicyMatch(policies=(rule,)) if dport < 1000 else None  # the verdict's port names the rule

    resolver.set_policy_explainer(explain)
    observer = _observer(resolver)
    samples = _port_samples(BOUNDARY_PORTS)
    rng = random.Random(5)
    order = samples * 2
    rng.shuffle(order)
    for i in range(0, len(order), 200):
        observer.publish_records(_batch(order[i : i + 200]), NOW + i * 1_000_003)
    templates = observer.flows.decoder.wire_templates()
    fast, plain = _both(observer, ALL)
    assert fast == plain
    assert templates.hits > len(order) // 2
    # one template per shape without the ports: far fewer than the samples' distinct port pairs
    assert templates.built < len(samples) // 4
    assert b"low-ports" in plain
    if with_services:
        assert b"any-port" in plain and b"\x0a\x03api\x12\x08payments" in plain


def test_port_hole_fields_match_the_slow_way() -> None:
    """The per-row l4 fields made in one numpy pass are the template's own, for random and
    boundary ports, over TCP and UDP templates, beside templates without holes."""
    rng = random.Random(3)
    made = []
    for tcp, flags in ((True, 0x18), (True, 0), (False, 0)):
        packet = enc.tcp(40000, 80, flags) if tcp else enc.udp(40000, 80)
        sample = enc.trace_event(enc.ethernet(enc.ipv4("10.0.0.1", "10.0.0.9", 6 if tcp else 17, packet)))
        observer = _observer(StaticResolver())
        observer.publish_records(_batch([sample]), NOW)
        entry = observer.flows.read_many([0])[0][0][1]
        wire = ResponseEncoder(observer_pb2.GetFlowsResponse).encode(entry)
        wire = wire[5:] if wire[:1] == b"\x00" else wire
        made.append(wiretemplates.Template.cut(wire, NOW, entry.flow["uuid"], (40000, 80)))
        assert made[-1] is not None and made[-1].l4_kind
        made.append(wiretemplates.Template.cut(wire, NOW, entry.flow["uuid"]))  # no holes
        assert made[-1] is not None and not made[-1].l4_kind
    picks = [*BOUNDARY_PORTS, *(rng.randrange(65536) for _ in range(200))]
    n = 3000
    index = np.array([rng.randrange(len(made)) for _ in range(n)], dtype=np.int64)
    ports = np.array([[rng.choice(picks) for _ in range(n)] for _ in range(2)], dtype=np.int64)
    fields, sizes = wiretemplates._l4_array(made, index, ports)
    for i in range(n):
        template = made[int(index[i])]
        if not template.l4_kind:
            assert sizes[i] == 0
            continue
        want = template.l4_field(int(ports[0, i]), int(ports[1, i]))
        assert fields[i, : sizes[i]].tobytes() == want and sizes[i] == len(want)


def test_port_field_tables_hold_every_ports_fields() -> None:
    from hubblepy.codec.fastwire import _varint

    sizes = wiretemplates._PORT_FIELD_SIZES.tolist()
    for table, tag in (
        (wiretemplates._SOURCE_PORT_FIELDS, b"\x08"),
        (wiretemplates._DESTINATION_PORT_FIELDS, b"\x10"),
    ):
        for port, word in enumerate(table.tolist()):
            want = tag + _varint(port) if port else b""
            assert word.to_bytes(8, "little") == want.ljust(8, b"\x00") and sizes[port] == len(want), port


def test_port_holes_follow_each_snapshots_services() -> None:
    """Scans that span resolver snapshots: a service appears on an address, then goes away; the
    ports of its flows are holes only in the snapshots without it."""
    resolver = _resolver()
    observer = _observer(resolver)
    samples = _port_samples((127, 128, 40000))
    for step in range(6):
        if step == 2:
            resolver.set_service("10.0.0.9", 16384, "late", "payments")
        if step == 4:
            resolver.services.pop(("10.0.0.9", 16384))
            resolver.generation += 1
        for i in range(0, len(samples), 150):
            observer.publish_records(_batch(samples[i : i + 150]), NOW + step * 10**9 + i)
    assert observer.flows.decoder.snapshots == 3
    fast, plain = _both(observer, ALL)
    assert fast == plain
    assert b"late" in plain
    assert observer.flows.decoder.wire_templates().hits > len(samples)
