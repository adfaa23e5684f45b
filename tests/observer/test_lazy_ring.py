"""Raw datapath samples in the observer ring: same flows as eager decoding, state as of capture,
column filters that change nothing in the output, lapped readers told how much they lost."""

from __future__ import annotations

import re
import struct
from typing import Any

import pytest
from rawbatch import record_batch

from hubblepy.api.observer import observer_pb2
from hubblepy.monitor.perf import PERF_RECORD_LOST, PERF_RECORD_SAMPLE
from hubblepy.monitor.reader import _record_starts, _walk_records
from hubblepy.observer.core import Observer
from hubblepy.observer.records import compile_column_filter, header_columns, verdicts
from hubblepy.observer.service import compile_request_column_filter, compile_request_filters, select_entries
from hubblepy.parser import EndpointInfo, Parser, StaticResolver
from hubblepy.parser import encode as enc

NOW = 1_700_000_000_123_456_789
UUID4 = re.compile("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def _resolver() -> StaticResolver:
    resolver = StaticResolver()
    for name, ep_id, identity, ip in (("frontend", 11, 1001, "10.0.0.1"), ("api", 12, 1002, "10.0.0.2")):
        resolver.add_endpoint(
            EndpointInfo(
                id=ep_id,
                identity=identity,
                namespace="payments",
                pod_name=name,
                labels=(f"k8s:app={name}", "k8s:io.kubernetes.pod.namespace=payments"),
                ips=(ip,),
            )
        )
    return resolver


def _packet(sport: int = 40000) -> bytes:
    return enc.ethernet(enc.ipv4("10.0.0.1", "10.0.0.2", 6, enc.tcp(sport, 8080, 0x02)))


def _samples() -> list[bytes]:
    """A mix like the datapath's: traces, policy drops, policy verdicts (allowed, denied, audit),
    a debug message and an empty sample."""
    out = []
    for i in range(6):
        out.append(
            enc.trace_event(_packet(40000 + i), source=11, src_label=1001, dst_label=1002, obs_point=i % 2)
        )
    out.append(enc.drop_event(_packet(41000), source=11, src_label=1001, dst_label=1002))
    out.append(enc.policy_verdict_event(_packet(42000), source=12, remote_label=1001, flags=1))
    out.append(enc.policy_verdict_event(_packet(42001), source=12, remote_label=1001, verdict=-133, flags=1))
    audit = enc.policy_verdict_flags(1, audited=True)
    out.append(enc.policy_verdict_event(_packet(42002), source=12, remote_label=1001, flags=audit))
    out.append(enc.debug_event(1, source=11))
    out.append(b"")
    out.append(enc.drop_event(_packet(41001), source=12, src_label=1002, dst_label=1001, reason=181))
    return out


def _without_uuid(flow: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in flow.items() if k != "uuid"}


def _lazy_observer(capacity: int = 4095) -> tuple[Observer, Parser, StaticResolver]:
    resolver = _resolver()
    parser = Parser(resolver, "node-1")
    observer = Observer("node-1", capacity)
    observer.use_parser(parser)
    return observer, parser, resolver


def _ring_flows(observer: Observer) -> list[dict[str, Any]]:
    ring = observer.flows
    got, lost = ring.read_many(range(ring.oldest_seq, ring.next_seq))
    assert lost == 0
    return [entry.flow for _, entry in got if entry.flow is not None]


def test_raw_samples_read_as_the_flows_eager_decoding_makes() -> None:
    samples = _samples()
    eager_parser = Parser(_resolver(), "node-1")
    eager = eager_parser.decode_batch([(0, raw) for raw in samples], NOW)
    observer, parser, _ = _lazy_observer()
    published = observer.publish_records(record_batch(samples), NOW)
    assert published == len(samples) - 2  # not the debug/empty ones
    lazy = _ring_flows(observer)
    assert [_without_uuid(f) for f in lazy] == [_without_uuid(f) for f in eager]
    assert len({f["uuid"] for f in lazy}) == len(lazy)
    assert all(UUID4.fullmatch(f["uuid"]) for f in lazy)
    assert len(parser.debug_events) == 1 and parser.error_counts["empty_sample"] == 1
    # a second read returns the same entries (same UUIDs): decoded once, cached in the ring
    assert _ring_flows(observer) == lazy
    assert observer.seen_flows == len(lazy)


def test_flows_name_the_endpoints_as_they_were_when_captured() -> None:
    observer, _, resolver = _lazy_observer()
    observer.publish_records(record_batch(_samples()[:1]), NOW)
    resolver.remove_endpoint(11)  # the frontend pod is deleted before anyone reads its flow
    resolver.add_endpoint(
        EndpointInfo(id=13, identity=1003, namespace="other", pod_name="new", ips=("10.0.0.1",))
    )
    observer.publish_records(record_batch(_samples()[:1]), NOW + 1)
    first, second = _ring_flows(observer)
    assert first["source"]["pod_name"] == "frontend"
    assert second["source"]["pod_name"] == "new"


def test_header_columns_give_the_verdict_of_each_flow() -> None:
    samples = _samples()
    cols, is_flow = header_columns(record_batch(samples))
    eager = Parser(_resolver(), "node-1").decode_batch([(0, raw) for raw in samples], NOW)
    names = {1: "FORWARDED", 2: "DROPPED", 4: "AUDIT", 5: "REDIRECTED"}
    known = [names[int(v)] for v in verdicts(cols.head[is_flow])]
    assert known == [f["verdict"] for f in eager]


def _request(**kwargs: Any) -> Any:
    return observer_pb2.GetFlowsRequest(**kwargs)


def _select(observer: Observer, request: Any, with_columns: bool) -> list[Any]:
    predicate = compile_request_filters(request)
    column_filter = compile_request_column_filter(request) if with_columns else None
    out = []
    for item in select_entries(observer.flows, request, lambda: True, predicate, None, False, column_filter):
        out.append(item if isinstance(item, int) else item.response)
    return out


@pytest.mark.parametrize(
    "filters",
    [
        {"verdict": ["DROPPED"]},
        {"verdict": ["AUDIT", "FORWARDED"]},
        {"event_type": [{"type": 5}]},
        {"event_type": [{"type": 1}], "source_pod": ["payments/api"]},
    ],
)
@pytest.mark.parametrize("number", [0, 2])
def test_column_filters_change_nothing_in_what_is_sent(filters: dict[str, Any], number: int) -> None:
    observer, _, _ = _lazy_observer()
    observer.publish_records(record_batch(_samples()), NOW)
    observer.publish_lost("PERF_EVENT_RING_BUFFER", 3, 1)
    observer.publish_records(record_batch(_samples()), NOW + 5)
    from google.protobuf import json_format

    from hubblepy.api.flow import flow_pb2

    ff = json_format.ParseDict(filters, flow_pb2.FlowFilter())
    for kwargs in ({"number": number}, {"first": True, "number": number}):
        request = _request(whitelist=[ff], **kwargs)
        plain = _select(observer, request, with_columns=False)
        assert plain, filters
        assert _select(observer, request, with_columns=True) == plain


def test_column_filter_keeps_what_the_header_cannot_tell() -> None:
    test = compile_column_filter([{"verdict": ["DROPPED"]}])
    assert test is not None
    assert compile_column_filter([{"verdict": ["DROPPED"]}, {"source_pod": ["a/b"]}]) is None
    assert compile_column_filter([]) is None


def test_a_lapped_reader_is_told_how_many_it_lost() -> None:
    observer, _, _ = _lazy_observer(capacity=15)
    ring = observer.flows
    samples = _samples()
    observer.publish_records(record_batch(samples), NOW)
    start = ring.oldest_seq
    for i in range(3):
        observer.publish_records(record_batch(samples), NOW + i + 1)
    got, lost = ring.read_many([start])
    assert got == [] and lost == ring.oldest_seq - start
    assert ring.overwritten == ring.next_seq - 15
    assert len(_ring_flows(observer)) == 15


def test_flow_listeners_get_decoded_entries() -> None:
    observer, _, _ = _lazy_observer()
    seen: list[Any] = []
    observer.add_flow_listener(seen.extend)
    observer.publish_records(record_batch(_samples()), NOW)
    assert [e.flow for e in seen] == _ring_flows(observer)


def test_namespaces_of_raw_flows() -> None:
    observer, _, _ = _lazy_observer()
    observer.publish_records(record_batch(_samples()), NOW)
    assert observer.namespaces() == [{"namespace": "payments"}]


def test_flows_rate_counts_raw_and_decoded_flows() -> None:
    observer, _, _ = _lazy_observer()
    observer.publish_records(record_batch(_samples()), NOW)
    observer.publish_lost("PERF_EVENT_RING_BUFFER", 3, 1)
    observer.publish_flows([(NOW + 1, {"time": "x"})])
    assert observer.flows_rate(NOW + 10) == pytest.approx(12 / 60)


def _perf_buffer(samples: list[bytes], lost_at: int | None = None) -> bytes:
    """perf records with PERF_SAMPLE_TIME (header, time, raw size, raw data padded to 8 bytes)."""
    out = bytearray()
    for i, raw in enumerate(samples):
        if lost_at == i:
            out += struct.pack("<IHHQQ", PERF_RECORD_LOST, 0, 24, 7, 42)
        body = struct.pack("<QI", 10**15 + i, len(raw)) + raw
        size = 8 + len(body) + (-(8 + len(body)) % 8)
        out += struct.pack("<IHH", PERF_RECORD_SAMPLE, 0, size) + body + bytes(size - 8 - len(body))
    return bytes(out)


def test_record_starts_match_the_record_walk() -> None:
    samples = [raw for raw in _samples() if raw]
    buf = _perf_buffer(samples)
    assert _record_starts(buf, len(buf)).tolist() == _walk_records(buf, len(buf))
    with_lost = _perf_buffer(samples, lost_at=3)
    assert _record_starts(with_lost, len(with_lost)).tolist() == _walk_records(with_lost, len(with_lost))
    # packet bytes that look like a sample header do not fool it
    fake = struct.pack("<IHH", PERF_RECORD_SAMPLE, 0, 16) + bytes(8)
    tricky = [raw + fake * 3 for raw in samples]
    buf = _perf_buffer(tricky)
    assert _record_starts(buf, len(buf)).tolist() == _walk_records(buf, len(buf))
    # ... nor ones whose size reaches past the buffer's end, alone (dropped before the walk) or beside the above
    far = struct.pack("<IHH", PERF_RECORD_SAMPLE, 0, 0xFFF8) + bytes(8)
    for tricky in ([raw + far for raw in samples], [raw + far + fake for raw in samples]):
        buf = _perf_buffer(tricky)
        assert _record_starts(buf, len(buf)).tolist() == _walk_records(buf, len(buf))


def test_status_counts_perf_losses_and_ring_overwrites() -> None:
    observer, _, _ = _lazy_observer(capacity=15)
    for i in range(3):
        observer.publish_records(record_batch(_samples()), NOW + i)
    observer.publish_lost("PERF_EVENT_RING_BUFFER", 42, 0)
    status = observer.status()
    assert status["lost_perf_events"] == "42"
    assert status["ring_overwritten"] == str(observer.flows.next_seq - 15)
    assert status["ring_readers_lost"] == "0"


def test_metrics_count_perf_losses_and_ring_overwrites() -> None:
    from hubblepy.metrics.registry import NodeHealthCollector

    observer, parser, _ = _lazy_observer(capacity=15)
    for i in range(3):
        observer.publish_records(record_batch(_samples()), NOW + i)
    observer.publish_lost("PERF_EVENT_RING_BUFFER", 42, 0)
    families = {f.name: f for f in NodeHealthCollector(observer, parser).collect()}
    lost = {
        s.labels["source"]: s.value
        for s in families["hubble_lost_events"].samples
        if s.name.endswith("_total")
    }
    assert lost["perf_event_ring_buffer"] == 42
    (over,) = [s for s in families["hubble_ring_overwritten"].samples if s.name.endswith("_total")]
    assert over.value == observer.flows.next_seq - 15


def test_a_reader_lapped_mid_scan_reports_the_loss_once() -> None:
    from hubblepy.observer import service

    observer, _, _ = _lazy_observer(capacity=15)
    observer.publish_records(record_batch(_samples()), NOW)
    request = _request(first=True)
    request.whitelist.add().verdict.append(2)  # DROPPED
    predicate = compile_request_filters(request)
    columns = compile_request_column_filter(request)
    real = service._candidates
    calls = []

    def lapping(ring, lo, hi, *args):  # the writer laps the reader while it tests the columns
        out = real(ring, lo, hi, *args)
        if not calls:
            for i in range(3):
                observer.publish_records(record_batch(_samples()), NOW + i + 1)
        calls.append(lo)
        return out

    service._candidates = lapping
    try:
        start = observer.flows.oldest_seq
        items = list(select_entries(observer.flows, request, lambda: True, predicate, None, False, columns))
    finally:
        service._candidates = real
    assert items == [observer.flows.oldest_seq - start]  # one LostEvent, nothing stale sent
    assert observer.flows.readers_lost == items[0]
