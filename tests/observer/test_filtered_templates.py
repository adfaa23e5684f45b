"""A verdict-filtered GetFlows (``--verdict DROPPED``, also with ``--follow``) served from wire
templates: the raw samples whose columns prove the match come from templates without being decoded
or tested, the other candidates take the ordinary path; the bytes are those of decode + filter +
encode for every request form, for mutated samples, and for a follower beside a publishing writer."""

from __future__ import annotations

import random
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hubblepy.api.observer import observer_pb2
from hubblepy.observer import service
from hubblepy.observer.core import Observer
from hubblepy.observer.ring import RingEntry
from hubblepy.observer.service import ResponseEncoder, stream_ring
from hubblepy.observer.transport import Frames
from hubblepy.parser import encode as enc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_wire_templates import (  # noqa: E402
    NOW,
    _base_samples,
    _batch,
    _mutate,
    _observer,
    _resolver,
    _stamp,
    _without_lost_times,
)


def _stream(observer: Observer, request: Any, templates: bool, stop: Any = None) -> bytes:
    """The framed GetFlows stream as the node sends it, with or without templates (where the
    request's filter lets them serve, as NodeServices decides)."""
    ring = observer.flows
    predicate = service.compile_request_filters(request)
    columns = service.compile_request_column_filter(request)
    exact = service.compile_request_exact_filter(request) if templates else None
    frames = service.flow_templates(observer, predicate, columns, exact) if templates else None
    if templates and (predicate is None or exact is not None):
        assert frames is not None
    encoder = ResponseEncoder(observer_pb2.GetFlowsResponse)
    responses = stream_ring(
        ring,
        request,
        lambda: True,
        encoder.encode,
        "node-1",
        predicate,
        stop,
        idle_marker=True,
        column_filter=columns,
        frames=frames,
        exact=exact,
    )
    return b"".join(service.flows_on_wire(responses, True))


def _both(observer: Observer, request: Any) -> tuple[bytes, bytes]:
    """The stream with templates (twice: the second read also sends the bytes the first one left
    in the ring cache), and the ordinary stream with an empty cache."""
    fast = _stream(observer, request, templates=True)
    again = _stream(observer, request, templates=True)
    observer.flows._cache[:] = [None] * len(observer.flows._cache)
    plain = _stream(observer, request, templates=False)
    assert _without_lost_times(again) == _without_lost_times(fast)
    return again, plain


def _filtered(verdicts: list[str], deny: bool = False, pod: str = "", **kwargs: Any) -> Any:
    request = observer_pb2.GetFlowsRequest(**kwargs)
    allow = request.whitelist.add(verdict=verdicts)
    if pod:
        allow.source_pod.append(pod)
    if deny:
        request.blacklist.add(source_pod=["payments/api"])
    return request


FILTERED = [
    (["DROPPED"], {}, True),
    (["FORWARDED", "DROPPED"], {}, True),
    (["AUDIT"], {}, True),
    (["REDIRECTED", "VERDICT_UNKNOWN"], {}, True),
    (["DROPPED"], {"number": 9}, True),
    (["DROPPED"], {"first": True, "number": 5}, True),
    (["FORWARDED"], {"since": _stamp(NOW + 20 * 7_919)}, True),
    (["DROPPED"], {"deny": True}, False),  # a deny filter: decoded and tested
    (["DROPPED"], {"pod": "payments/"}, False),  # more than the verdict: decoded and tested
]


@pytest.mark.parametrize(("verdicts", "options", "templated"), FILTERED)
def test_verdict_filtered_streams_give_the_ordinary_bytes(
    verdicts: list[str], options: dict[str, Any], templated: bool
) -> None:
    """Mutated samples (drops and verdicts whose headers lie, short or garbled packets) beside the
    unmutated ones, a LostEvent and a decoded flow: the filtered stream from templates is the
    decode + filter + encode stream, byte for byte; templates serve only the filters the columns decide."""
    rng = random.Random(len(verdicts) * 31 + len(options))
    eth = enc.ethernet(enc.ipv4("10.0.0.1", "10.0.0.2", 6, enc.tcp(40000, 8080, enc.TCP_SYN)))
    base = _base_samples() + [
        enc.policy_verdict_event(eth, source=12, remote_label=1001, dst_port=8080, flags=0x41),  # AUDIT
        enc.policy_verdict_event(eth, source=12, remote_label=1001, dst_port=8080, verdict=4, flags=1),
    ]
    samples = []
    for _ in range(1200):
        sample = rng.choice(base)
        if rng.random() < 0.4:
            sample = _mutate(rng, sample)
            if sample[:1] in (b"\x02", b""):
                continue
        samples += [sample] * rng.choice((1, 2, 3))
    observer = _observer(_resolver())
    for i in range(0, len(samples), 97):
        observer.publish_records(_batch(samples[i : i + 97]), NOW + i * 7_919)
        if i == 97 * 3:
            observer.publish_lost("PERF_EVENT_RING_BUFFER", 3, 1)
            observer.publish_flows([(NOW + 25, {"time": "2023-11-14T22:13:20.123456814Z", "uuid": "u"})])
    request = _filtered(verdicts, **options)
    fast, plain = _both(observer, request)
    assert _without_lost_times(fast) == _without_lost_times(plain)
    assert len(_without_lost_times(plain)) >= 5
    hits = observer.flows.decoder.wire_templates().hits
    assert hits > 0 if templated else hits == 0


def test_a_dropped_follower_gets_the_ordinary_bytes_while_the_writer_publishes() -> None:
    """``--follow --verdict DROPPED`` from templates, beside a writer publishing batches of mixed
    samples: the follower's bytes are those of a decode + filter + encode read of the same ring."""

    base = _base_samples()
    observer = _observer(_resolver())
    # from the oldest entry on, then following (``--since ... --follow``): none is missed by a late start
    request = _filtered(["DROPPED"], follow=True, since=_stamp(NOW - 1))
    stop = threading.Event()
    out: list[bytes] = []
    follower = threading.Thread(target=lambda: out.append(_stream(observer, request, True, stop)))
    follower.start()
    rng = random.Random(7)
    for i in range(60):
        batch = [rng.choice(base) for _ in range(rng.randrange(20, 120))]
        observer.publish_records(_batch(batch), NOW + i * 1_000)
    stop.set()  # a follower stops once it has caught up with the writer
    follower.join(60)
    assert not follower.is_alive()
    observer.flows._cache[:] = [None] * len(observer.flows._cache)
    plain = _stream(observer, _filtered(["DROPPED"], first=True), templates=False)
    assert out[0] == plain
    assert observer.flows.decoder.wire_templates().hits > 100
    assert len(_without_lost_times(plain)) > 300


@pytest.mark.parametrize(
    ("allow", "deny", "exact"),
    [
        ([{"verdict": ["DROPPED"]}], [], True),
        ([{"verdict": ["DROPPED", 1]}, {"verdict": ["AUDIT"]}], [], True),
        ([{"verdict": ["VERDICT_UNKNOWN"]}], [], False),  # nothing a header can prove
        ([{"verdict": ["DROPPED"]}], [{"verdict": ["FORWARDED"]}], False),
        ([{"verdict": ["DROPPED"], "source_pod": ["a/"]}], [], False),
        ([{"verdict": ["DROPPED"]}, {"source_pod": ["a/"]}], [], False),
        ([{"verdict": ["NOT_A_VERDICT"]}], [], False),
        ([{"event_type": [{"type": 1}]}], [], False),
    ],
)
def test_exact_column_filter_only_for_verdict_filters(
    allow: list[dict[str, Any]], deny: list[dict[str, Any]], exact: bool
) -> None:
    from hubblepy.observer.records import compile_exact_column_filter

    assert (compile_exact_column_filter(allow, deny) is not None) == exact


def _responses(frames: bytes) -> int:
    n = pos = 0
    while pos < len(frames):
        pos += 5 + int.from_bytes(frames[pos + 1 : pos + 5], "big")
        n += 1
    return n


def _follower_past_ten(templates: bool) -> tuple[Observer, list[Any], Iterator[Any], threading.Event]:
    """An observer of 63 slots holding 10 of 20 samples, the 20 samples, and a ``--follow`` reader of
    every verdict (with flow templates, or decoding entries) that has read those 10; and its stop."""
    observer = _observer(_resolver(), capacity=63)
    base = _base_samples()[:20]
    observer.publish_records(_batch(base[:10]), NOW)
    request = _filtered(["DROPPED", "FORWARDED", "AUDIT", "REDIRECTED"], follow=True, since=_stamp(NOW - 1))
    predicate = service.compile_request_filters(request)
    columns = service.compile_request_column_filter(request)
    exact = service.compile_request_exact_filter(request) if templates else None
    frames = service.flow_templates(observer, predicate, columns, exact) if templates else None
    assert frames is not None or not templates
    stop = threading.Event()
    items = service.select_entries(
        observer.flows, request, lambda: True, predicate, stop, False, columns, frames, exact
    )
    taken = 0
    while taken < 10:  # the first scan: the 10 entries written so far (as entries or framed runs)
        item = next(items)
        taken += _responses(item) if isinstance(item, bytes) else 1
    assert taken == 10
    return observer, base, items, stop


@pytest.mark.parametrize("templates", [False, True])
def test_a_lapped_follower_resumes_a_quarter_ring_past_the_oldest(templates: bool) -> None:
    """A follower the writer lapped gets one LostEvent for what it missed and what it skips, and goes
    on a quarter of the ring past the oldest entry (from the oldest it would be lapped at once again)."""
    observer, base, items, stop = _follower_past_ten(templates)
    ring = observer.flows
    for i in range(10):
        observer.publish_records(_batch(base), NOW + 1 + i)  # 200 more: the follower is lapped
    resume = ring.oldest_seq + len(ring) // service.LAPPED_SKIP
    assert next(items) == resume - 10
    after = next(items)
    if templates:
        assert isinstance(after, bytes)
        size = int.from_bytes(after[1:5], "big")
        uuid = observer_pb2.GetFlowsResponse.FromString(after[5 : 5 + size]).flow.uuid
    else:
        uuid = after.flow["uuid"]
    assert uuid == ring.decoder.uuids([resume])[0]
    stop.set()
    assert ring.readers_lost == resume - 10


def test_a_follower_of_large_batches_gets_every_drop_in_order_with_counted_handoffs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A ``--follow --verdict DROPPED`` reader beside a writer of batches large enough that the
    follower, once caught up, waits to gather a scan's worth (COALESCE_SHARE): its bytes are those
    of a decode + filter + encode read of the ring, and each template handoff says how many
    responses it holds."""
    monkeypatch.setattr(service, "COALESCE_S", 0.02)
    gathers: list[int] = []
    real_gather = service._gather_more

    def gather(ring_: Any, want: int, stop_: Any) -> None:
        gathers.append(want)
        real_gather(ring_, want, stop_)

    monkeypatch.setattr(service, "_gather_more", gather)
    base = _base_samples()
    observer = _observer(_resolver())
    request = _filtered(["DROPPED"], follow=True, since=_stamp(NOW - 1))
    ring = observer.flows
    predicate = service.compile_request_filters(request)
    columns = service.compile_request_column_filter(request)
    exact = service.compile_request_exact_filter(request)
    frames = service.flow_templates(observer, predicate, columns, exact)
    stop = threading.Event()
    idle = threading.Event()
    encoder = ResponseEncoder(observer_pb2.GetFlowsResponse)
    out: list[bytes] = []
    counted: list[tuple[int, int]] = []

    def follow() -> None:
        items = service.select_entries(
            ring, request, lambda: True, predicate, stop, True, columns, frames, exact
        )
        for item in items:
            if item is None:  # caught up: about to wait
                idle.set()
            elif type(item) is Frames:
                counted.append((item.messages, _responses(item)))
                out.append(item)
            elif isinstance(item, RingEntry):
                wire = encoder.encode(item)
                out.append(len(wire).to_bytes(5, "big") + wire)

    follower = threading.Thread(target=follow)
    follower.start()
    rng = random.Random(11)
    for i in range(12):
        # each batch once the follower has caught up: each of its scans covers a whole batch, more
        # than 1/COALESCE_SHARE of its scan size, so it gathers before the next one
        assert idle.wait(30)
        idle.clear()
        batch = [rng.choice(base) for _ in range(rng.randrange(4200, 6000))]
        observer.publish_records(_batch(batch), NOW + i * 1_000_003)
        if i % 3 == 0:
            observer.publish_records(_batch(batch[:500]), NOW + i * 1_000_003 + 1)
    assert idle.wait(30)
    stop.set()
    follower.join(60)
    assert not follower.is_alive()
    assert ring.next_seq < ring.capacity  # nothing overwritten: every drop is there to compare
    ring._cache[:] = [None] * len(ring._cache)
    plain = _stream(observer, _filtered(["DROPPED"], first=True), templates=False)
    assert b"".join(out) == plain
    assert counted and all(told == seen for told, seen in counted)
    assert sum(told for told, _ in counted) > 1000
    assert len(gathers) >= 10


def test_a_gathering_follower_lapped_while_it_waits_reports_the_loss(monkeypatch: pytest.MonkeyPatch) -> None:
    """A follower waiting to gather a scan's worth (COALESCE_S) while the writer laps it sends one
    LostEvent and goes on a quarter of the ring past the oldest entry, as one lapped between scans."""
    monkeypatch.setattr(service, "COALESCE_SHARE", 1 << 30)  # gather after any scan
    monkeypatch.setattr(service, "COALESCE_S", 0.3)
    observer, base, items, stop = _follower_past_ten(templates=True)
    ring = observer.flows
    got: list[Any] = []
    waiting = threading.Thread(target=lambda: got.append(next(items)))  # caught up: it waits
    waiting.start()
    time.sleep(0.05)
    for i in range(10):
        observer.publish_records(_batch(base), NOW + 1 + i)  # 200 more while it gathers
    waiting.join(5)
    resume = ring.oldest_seq + len(ring) // service.LAPPED_SKIP
    assert got == [resume - 10]
    after = next(items)
    assert isinstance(after, bytes)
    size = int.from_bytes(after[1:5], "big")
    assert (
        observer_pb2.GetFlowsResponse.FromString(after[5 : 5 + size]).flow.uuid
        == ring.decoder.uuids([resume])[0]
    )
    stop.set()
