"""Metrics counted from the ring's raw samples by batch key equal the per-flow counts of the same events."""

from __future__ import annotations

import struct

import orjson
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from rawbatch import record_batch

from hubblepy.metrics import ALL_FAMILIES, FlowMetrics, build_node_metrics, parse_metrics
from hubblepy.metrics.lab import DEFAULT_LAB_METRICS
from hubblepy.metrics.rawkeys import sample_keys
from hubblepy.observer.core import Observer
from hubblepy.parser import EndpointInfo, Parser, StaticResolver
from hubblepy.parser import encode as enc

NOW = 1_700_000_000_000_000_000
CONTEXTS = (
    "sourceContext=namespace|ip;destinationContext=pod|dns;labelsContext=source_namespace,destination_ip"
)
SETTINGS = [
    DEFAULT_LAB_METRICS,
    ALL_FAMILIES,
    " ".join(f"{name}:{CONTEXTS}" for name in ALL_FAMILIES.split()),
    "flows-to-world:any-drop;port;syn-only port-distribution:sourceEgressContext=workload;destinationIngressContext=app",
]


def _resolver() -> StaticResolver:
    resolver = StaticResolver()
    for name, ep_id, identity, ips in (
        ("frontend", 11, 1001, ("10.0.0.1", "fd00::1")),
        ("api", 12, 1002, ("10.0.0.2", "fd00::2")),
    ):
        resolver.add_endpoint(
            EndpointInfo(
                id=ep_id,
                identity=identity,
                namespace="payments",
                pod_name=f"{name}-6d8f7-x2k4p",
                labels=(f"k8s:app={name}", "k8s:io.kubernetes.pod.namespace=payments"),
                ips=ips,
            )
        )
    return resolver


def _tcp_options(sport: int, dport: int, flags: int, options: bytes, seq: int = 1) -> bytes:
    options += bytes(-len(options) % 4)
    doff = 5 + len(options) // 4
    return struct.pack("!HHIIBBHHH", sport, dport, seq, 0, doff << 4, flags, 512, 0, 0) + options


def _v4(src: str, dst: str, proto: int, l4: bytes, **kw: object) -> bytes:
    return enc.ethernet(enc.ipv4(src, dst, proto, l4, **kw))  # type: ignore[arg-type]


def _eth6(packet: bytes) -> bytes:
    return enc.ethernet(packet, ethertype=0x86DD)


def _samples(round_: int) -> list[bytes]:
    """Every kind of event the key must tell apart, with per-packet noise (sequence numbers, hashes,
    payload, trace ids) that it must not. Packets differ from the first in one field each, and every
    packet goes out in the same set of event headers, so a key missing any field merges two groups."""
    syn, ack, fin, rst = enc.TCP_SYN, enc.TCP_ACK, enc.TCP_FIN, enc.TCP_RST
    ts = bytes([1, 1, 8, 10]) + struct.pack("!II", round_, 7)  # nop nop timestamps
    a, b, world = "10.0.0.1", "10.0.0.2", "93.184.216.34"
    packets = [
        _v4(a, b, 6, enc.tcp(40000, 8080, syn, payload=b"x" * round_)),
        _v4(a, b, 6, enc.tcp(40000, 8080, syn | ack)),
        _v4(a, b, 6, enc.tcp(40000, 8080, fin | ack)),
        _v4(a, b, 6, enc.tcp(40000, 8080, syn, ns=True)),
        _v4(a, b, 6, enc.tcp(40000, 8080, rst)),
        _v4(a, b, 6, enc.tcp(40000, 8081, syn)),
        _v4(a, b, 6, enc.tcp(8080, 40000, syn)),
        _v4(b, a, 6, enc.tcp(40000, 8080, syn)),
        _v4(a, world, 6, enc.tcp(40000, 8080, syn)),
        _v4(a, b, 6, _tcp_options(40000, 8080, syn, ts, seq=round_ * 7)),
        _v4(a, b, 6, _tcp_options(40000, 8080, syn, bytes([3, 9, 1, 1]))),  # option length past the end
        _v4(a, b, 6, _tcp_options(40000, 8080, syn, bytes([1, 3, 1, 1]))),  # option length below 2
        _v4(
            a, b, 6, _tcp_options(40000, 8080, syn, bytes([2, 4, 5, 180]))
        ),  # a valid MSS option, same offset
        _v4(a, b, 6, enc.tcp(40000, 8080, 0)),  # no flags: only the protocol tells it from UDP
        _v4(a, b, 6, struct.pack("!HHIIBB", 40000, 8080, 0, 0, 4 << 4, syn) + bytes(6)),  # data offset < 20
        _v4(
            a, b, 6, struct.pack("!HHIIBB", 40000, 8080, 0, 0, 15 << 4, syn) + bytes(6)
        ),  # offset past the end
        _v4(a, b, 6, enc.tcp(40000, 8080, syn), frag=0x2000),  # more fragments: no L4
        _v4(a, b, 6, enc.tcp(40000, 8080, syn), total_len=30),  # L4 cut short by the IP length
        _v4(a, b, 6, enc.tcp(40000, 8080, syn))[:50],  # truncated TCP: parse error
        _v4(a, b, 17, enc.udp(40000, 8080, b"q" * (round_ + 3))),
        _v4(a, world, 17, enc.udp(40000, 53)),
        _v4(a, b, 132, enc.sctp(40000, 8080)),
        _v4(a, b, 1, enc.icmp4(8)),
        _v4(a, b, 1, enc.icmp4(3, 3)),
        _v4(a, b, 1, enc.icmp4(3, 1)),
        _eth6(enc.ipv6("fd00::1", "fd00::2", 6, enc.tcp(40000, 8080, syn))),
        _eth6(enc.ipv6("fd00::1", "2001:db8::5", 6, enc.tcp(40000, 8080, syn))),
        _eth6(enc.ipv6("fd00::1", "fd00::2", 58, enc.icmp6(128))),
        _eth6(enc.ipv6("fd00::1", "fd00::2", 17, enc.udp(40000, 53))),
        _eth6(enc.ipv6("fd00::1", "fd00::2", 6, enc.tcp(40000, 8080, syn)))[:50],  # truncated IPv6 header
        _eth6(
            enc.ipv6("fd00::1", "fd00::2", 0, bytes([6, 0]) + bytes(6) + enc.tcp(40000, 8080, syn))
        ),  # hop-by-hop
        enc.ethernet(b"\x00" * 28, ethertype=0x0806),  # ARP
    ]
    out = []
    for pkt in packets:
        for obs_point in (0, 5, 3):
            out.append(enc.trace_event(pkt, source=11, src_label=1001, dst_label=1002, obs_point=obs_point))
        for version in (0, 1, 2):
            out.append(
                enc.trace_event(pkt, version=version, source=12, src_label=1002, reason=4, trace_id=round_)
            )
        out.append(enc.trace_event(pkt, source=12, src_label=1002, reason=0x81))
        out.append(enc.trace_event(pkt, version=1, source=11, src_label=1001, orig_ip="10.9.9.9"))
        for version in range(4):
            out.append(
                enc.drop_event(pkt, version=version, source=11, src_label=1001, dst_label=2, trace_id=round_)
            )
        out.append(enc.drop_event(pkt, source=11, src_label=1001, dst_label=2, reason=181, line=round_))
        for match in range(3):
            flags = enc.policy_verdict_flags(1, match_type=match)
            out.append(enc.policy_verdict_event(pkt, source=12, remote_label=1001, flags=flags))
        out.append(enc.policy_verdict_event(pkt, source=12, remote_label=1001, verdict=-133))
        out.append(enc.policy_verdict_event(pkt, source=11, remote_label=2, flags=2))
        out.append(enc.policy_verdict_event(pkt, layout=32, source=11, remote_label=2, flags=2))
        out.append(
            enc.policy_verdict_event(
                pkt, source=11, remote_label=1, flags=enc.policy_verdict_flags(1, audited=True)
            )
        )
        out.append(enc.trace_event(pkt, source=11, src_label=1001, flags=0x02))  # L3 device: no Ethernet
        out.append(enc.trace_event(pkt, source=11, src_label=1001, flags=0x04))  # VXLAN classifier flag
    out.append(enc.debug_event(1, source=11))
    return out


def _lines(registry: CollectorRegistry) -> list[str]:
    return sorted(
        line
        for line in generate_latest(registry).decode().splitlines()
        if line.startswith("hubble_")
        and not line.startswith(("hubble_metrics_errors", "hubble_ring"))
        and not line.startswith(("hubble_seen", "hubble_lost", "hubble_parser"))
    )


@pytest.mark.parametrize("setting", SETTINGS)
def test_batch_counts_equal_per_flow_counts(setting: str) -> None:
    per_flow_registry = CollectorRegistry()
    per_flow = FlowMetrics(parse_metrics(setting), per_flow_registry)
    eager = Observer("node-1", capacity=1023)
    eager_parser = Parser(_resolver(), "node-1")
    eager.use_parser(eager_parser)
    eager.add_flow_listener(per_flow.on_entries)  # every flow decoded and counted

    lazy = Observer("node-1", capacity=1023)  # the last batch is longer than the ring: both count its tail
    lazy_parser = Parser(_resolver(), "node-1")
    lazy.use_parser(lazy_parser)
    registry, batched = build_node_metrics(lazy, setting)

    for round_ in range(7):
        samples = _samples(round_)
        if round_ == 3:  # a pod appears behind the world address: flows seen before now count apart
            for parser in (eager_parser, lazy_parser):
                parser._resolver.add_endpoint(
                    EndpointInfo(
                        id=13, identity=1003, namespace="web", pod_name="edge", ips=("93.184.216.34",)
                    )
                )
        if round_ == 5:
            samples = samples * 2
        if round_ == 6:  # a batch too small for keys: decoded one by one
            samples = samples[::40]
        batch = record_batch(samples)
        before = lazy_parser.flows_decoded
        assert eager.publish_records(batch, NOW + round_) == lazy.publish_records(batch, NOW + round_)
        if round_ in (1, 2, 4):  # keys seen before: only the samples without a key are decoded
            _, eligible = sample_keys(batch.data, batch.offsets, batch.lengths)
            assert lazy_parser.flows_decoded - before <= int((~eligible).sum()) < len(samples) / 2
    assert _lines(registry) == _lines(per_flow_registry)
    assert any("_total{" in line for line in _lines(registry))
    assert lazy_parser.flows_decoded < eager_parser.flows_decoded / 2


def test_keys_ignore_per_packet_noise_and_separate_fields() -> None:
    def key(sample: bytes) -> tuple[bytes, bool]:
        batch = record_batch([sample])
        keys, eligible = sample_keys(batch.data, batch.offsets, batch.lengths)
        return keys[0].tobytes(), bool(eligible[0])

    syn = _v4("10.0.0.1", "10.0.0.2", 6, enc.tcp(40000, 8080, enc.TCP_SYN))
    longer = _v4("10.0.0.1", "10.0.0.2", 6, enc.tcp(40000, 8080, enc.TCP_SYN, payload=b"abc"))
    base, ok = key(enc.drop_event(syn, source=11, src_label=1001, trace_id=1))
    assert ok
    assert key(enc.drop_event(longer, source=11, src_label=1001, trace_id=99)) == (base, True)
    other_reason = key(enc.drop_event(syn, source=11, src_label=1001, reason=181))
    other_port = key(
        enc.drop_event(
            _v4("10.0.0.1", "10.0.0.2", 6, enc.tcp(40000, 8081, enc.TCP_SYN)), source=11, src_label=1001
        )
    )
    assert base not in (other_reason[0], other_port[0])
    assert key(enc.trace_event(syn, flags=0x02)) == (bytes(len(base)), False)  # L3 device: decoded alone


def _access_log_lines() -> list[bytes]:
    """A proxy's access log: compact lines of four templates (requests and responses of two
    connections, one denied), with traceparent on some requests, and whole records between them."""

    def base(kind: str, port: int, code: int, verdict: str, method: str) -> dict:
        client = {
            "ID": 11,
            "IPv4": "10.0.0.1",
            "Port": port,
            "Identity": 1001,
            "Labels": ["k8s:app=frontend"],
        }
        server = {"ID": 12, "IPv4": "10.0.0.2", "Port": 8080, "Identity": 1002, "Labels": ["k8s:app=api"]}
        src, dst = (client, server) if kind == "Request" else (server, client)
        return {
            "Type": kind,
            "Timestamp": "",
            "ObservationPoint": "Ingress",
            "Verdict": verdict,
            "SourceEndpoint": src,
            "DestinationEndpoint": dst,
            "IPVersion": 0,
            "TransportProtocol": 6,
            "SourceAddress": f"{src['IPv4']}:{src['Port']}",
            "DestinationAddress": f"{dst['IPv4']}:{dst['Port']}",
            "HTTP": {
                "Code": code,
                "Method": method,
                "URL": {"Scheme": "http", "Host": "api:8080", "Path": "/api/v1/orders"},
                "Protocol": "HTTP/1.1",
                "Headers": {},
            },
            "hubblepy": {"proxy_port": 15001},
        }

    templates = {
        1: base("Request", 40000, 0, "Forwarded", "GET"),
        2: base("Response", 40000, 200, "Forwarded", "GET"),
        3: base("Request", 40001, 0, "Denied", "POST"),
        4: base("Response", 40001, 403, "Forwarded", "POST"),
    }
    lines = [b'["T",%d,%b]' % (n, orjson.dumps(t)) for n, t in templates.items()]
    for i in range(120):
        denied = i % 3 == 0
        request_id = f"req-{i}"
        headers: dict[str, list[str]] = {"X-Request-Id": [request_id]}
        if i % 4 == 0:
            headers["Traceparent"] = [f"00-{i + 1:032x}-{i + 7:016x}-01"]
        sent = f"2026-01-01T00:00:{i % 50:02d}.{i:03d}Z"
        answered = f"2026-01-01T00:00:{i % 50:02d}.{i + 1 + i % 7:03d}Z"
        request, response = (3, 4) if denied else (1, 2)
        lines.append(b'[%d,"%b",%b]' % (request, sent.encode(), orjson.dumps(headers)))
        reply = b'[%d,"%b",%b]' % (response, answered.encode(), orjson.dumps({"X-Request-Id": [request_id]}))
        if i % 10 == 5:  # the same record, whole
            record = templates[response] | {"Timestamp": answered}
            record["HTTP"] = record["HTTP"] | {"Headers": {"X-Request-Id": [request_id]}}
            reply = orjson.dumps(record)
        lines.append(reply)
    return lines


def _correlated_lines(lines: list[bytes]) -> list[bytes]:
    """``lines`` as the HTTP proxy writes them: templated records as rows (in batches of up to 7)
    and whole records, with the correlation its own X-Request-Id table works out (so the node does
    not correlate them)."""
    from hubblepy.codec.timestamps import parse_rfc3339_ns
    from hubblepy.parser.seven import Correlator
    from hubblepy.proxy.accesslog import RecordAssembler, header_set, special_headers

    assembler, correlator = RecordAssembler(), Correlator()
    out: list[bytes] = []
    rows: list[tuple] = []
    numbers: dict[int, int] = {}  # header set -> its number
    for line in lines:
        record = assembler.record(line)
        if record is None:
            out.append(line)
            continue
        ns = parse_rfc3339_ns(record["Timestamp"])
        headers = [(k.encode(), v.encode()) for k, vs in record["HTTP"]["Headers"].items() for v in vs]
        request_id, traceparent = special_headers(headers)
        if record["Type"] == "Request":
            latency, trace_id = 0, correlator.request(ns, request_id, traceparent)
        else:
            latency, trace_id = correlator.response(ns, request_id)
        if assembler.key is None:
            if rows:
                out.append(orjson.dumps(rows))
                rows = []
            out.append(b"=%d %b %b" % (latency, trace_id.encode() or b"-", orjson.dumps(record)))
            continue
        found, hole = header_set(headers)
        number = numbers.get(id(found))
        if number is None:
            if rows:
                out.append(orjson.dumps(rows))
                rows = []
            number = numbers[id(found)] = 1000 + len(numbers)
            out.append(b'["H",%d,%b]' % (number, found.definition))
        rows.append((assembler.key[1], ns, latency, trace_id, number, hole))
        if len(rows) == 7:
            out.append(orjson.dumps(rows))
            rows = []
    if rows:
        out.append(orjson.dumps(rows))
    return out


@pytest.mark.parametrize("correlated", [False, True], ids=["node-correlates", "proxy-correlates"])
@pytest.mark.parametrize("setting", [*SETTINGS, "httpV2:exemplars=true;sourceContext=pod policy flow"])
def test_templated_access_log_counts_equal_per_flow_counts(setting: str, correlated: bool) -> None:
    """Counting templated records once per key gives what counting every flow gives; with the
    proxy's correlation (lazy records, no node-side X-Request-Id table) the flows are the same."""
    from hubblepy.proxy.accesslog import LazyRecord, RecordAssembler, whole_record

    per_flow_registry = CollectorRegistry()
    per_flow = FlowMetrics(parse_metrics(setting), per_flow_registry)
    eager = Observer("node-1", capacity=1023)
    eager_parser = Parser(_resolver(), "node-1")
    eager.use_parser(eager_parser)
    eager.add_flow_listener(per_flow.on_entries)  # every flow decoded and counted

    lazy = Observer("node-1", capacity=1023)
    lazy_parser = Parser(_resolver(), "node-1")
    lazy.use_parser(lazy_parser)
    registry, _ = build_node_metrics(lazy, setting)

    assembler = RecordAssembler()
    records, keys, correlations = [], [], []
    lines = _access_log_lines()
    for line in _correlated_lines(lines) if correlated else lines:
        got, got_keys, got_correlations = assembler.assemble(line)
        records += got
        keys += got_keys
        correlations += got_correlations
    assert assembler.bad == 0 and len(records) == 240 and keys.count(None) == 12
    if correlated:
        assert None not in correlations and sum(type(r) is LazyRecord for r in records) == 228
    whole = [whole_record(r) for r in records]
    for lo in range(0, len(records), 50):  # several batches, keys seen before
        part = slice(lo, lo + 50)
        assert eager.publish_l7(whole[part], NOW + lo, eager_parser.seven) == lazy.publish_l7(
            records[part], NOW + lo, lazy_parser.seven, keys[part], correlations[part] if correlated else None
        )
    assert _lines(registry) == _lines(per_flow_registry)
    if "httpV2" in setting:
        assert any(line.startswith("hubble_http_request_duration_seconds_sum{") for line in _lines(registry))
    assert lazy_parser.flows_decoded <= 4 * 5 + 12  # one record per template and batch, whole ones
    assert eager_parser.flows_decoded == 240
    # the same flows when read
    got = [e.flow for _, e in lazy.flows.read_many(list(range(240)))[0]]
    want = [e.flow for _, e in eager.flows.read_many(list(range(240)))[0]]
    strip = ("uuid", "time")
    assert [{k: v for k, v in f.items() if k not in strip} for f in got] == [
        {k: v for k, v in f.items() if k not in strip} for f in want
    ]


@pytest.mark.parametrize(
    "setting", [DEFAULT_LAB_METRICS, "httpV2:exemplars=true;sourceContext=pod policy flow"]
)
def test_rows_counted_from_ring_slices_equal_per_flow_counts(setting: str) -> None:
    """Batches of rows only (what a busy HTTP proxy sends): the metrics take each batch's payloads
    as slices of the ring, also where a batch wraps around the ring's end, and count what counting
    every flow counts."""
    from hubblepy.observer.ring import KIND_L7
    from hubblepy.proxy.accesslog import LazyRecord, RecordAssembler, whole_record

    assembler = RecordAssembler()
    rows = []
    for line in _correlated_lines(_access_log_lines()):
        got, keys, correlations = assembler.assemble(line)
        rows += [row for row in zip(got, keys, correlations, strict=True) if type(row[0]) is LazyRecord]
    assert len(rows) == 228

    per_flow_registry = CollectorRegistry()
    per_flow = FlowMetrics(parse_metrics(setting), per_flow_registry)
    eager = Observer("node-1", capacity=63)
    eager_parser = Parser(_resolver(), "node-1")
    eager.use_parser(eager_parser)
    eager.add_flow_listener(per_flow.on_entries)
    lazy = Observer("node-1", capacity=63)  # 228 records in batches of 38: each lap or wrap the ring
    lazy_parser = Parser(_resolver(), "node-1")
    lazy.use_parser(lazy_parser)
    registry, flow_metrics = build_node_metrics(lazy, setting)
    for lo in range(0, len(rows), 38):
        records, keys, correlations = (list(col) for col in zip(*rows[lo : lo + 38], strict=True))
        eager.publish_l7([whole_record(r) for r in records], NOW + lo, eager_parser.seven)
        lazy.publish_l7(records, NOW + lo, lazy_parser.seven, keys, correlations)
    assert _lines(registry) == _lines(per_flow_registry)
    assert any(line.startswith("hubble_http_requests_total{") for line in _lines(registry))
    # the last batch's range (it wrapped: 190 & 63 > 227 & 63) is one the metrics take as slices
    ring = lazy.flows
    slots = ring.slots(190, 228)
    assert slots[0] > slots[-1] and (ring.kind[slots] == KIND_L7).all()
    assert flow_metrics._on_l7_range(ring, 190, 228, slots, ring.kind[slots]) is True
