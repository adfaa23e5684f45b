"""Sort buffer order and the raw GetFlowsResponse scanner."""

import random

from hubblepy.api.observer import observer_pb2
from relay.merge import SortBuffer
from relay.wire import KIND_FLOW, KIND_LOST_EVENTS, KIND_NODE_STATUS, scan_response


def test_full_size_buffer_sorts_everything():
    times = list(range(500))
    random.Random(4).shuffle(times)
    buf = SortBuffer(1000)
    out = [o for t in times if (o := buf.push(t, str(t).encode())) is not None]
    out += list(buf.drain())
    assert [int(b) for b in out] == sorted(times)


def test_bounded_buffer_releases_oldest_when_full():
    buf = SortBuffer(2)
    assert buf.push(5, b"5") is None
    assert buf.push(3, b"3") is None
    assert buf.push(4, b"4") == b"3"
    assert buf.push(1, b"1") == b"1"  # older than everything held: goes out at once
    assert list(buf.drain()) == [b"4", b"5"]


def test_equal_times_keep_arrival_order():
    buf = SortBuffer(10)
    for name in (b"a", b"b", b"c"):
        buf.push(7, name)
    assert list(buf.drain()) == [b"a", b"b", b"c"]


def test_scan_response_reads_time_and_kind():
    resp = observer_pb2.GetFlowsResponse(node_name="n1")
    resp.flow.uuid = "x" * 300
    resp.time.FromNanoseconds(1_709_251_018_592_508_929)
    assert scan_response(resp.SerializeToString()) == (1_709_251_018_592_508_929, KIND_FLOW)
    lost = observer_pb2.GetFlowsResponse()
    lost.lost_events.num_events_lost = 3
    assert scan_response(lost.SerializeToString()) == (0, KIND_LOST_EVENTS)
    status = observer_pb2.GetFlowsResponse()
    status.node_status.node_names.append("n")
    status.time.FromNanoseconds(-5_000_000_000)
    assert scan_response(status.SerializeToString()) == (-5_000_000_000, KIND_NODE_STATUS)


def test_scan_response_empty_flow_unknown_fields_and_garbage():
    resp = observer_pb2.GetFlowsResponse(node_name="n1")
    resp.flow.SetInParent()  # an empty Flow message is still a flow
    resp.time.FromNanoseconds(7)
    assert scan_response(resp.SerializeToString()) == (7, KIND_FLOW)
    assert scan_response(resp.SerializeToString() + b"\xa8\x1f\x01") == (7, KIND_FLOW)  # unknown field 500
    assert scan_response(b"\x0a\x05ab") == (0, 0)  # truncated
    assert scan_response(b"") == (0, 0)


def test_split_batch_round_trip_and_malformed():
    import pytest

    from hubblepy.observer.service import _length_prefixed
    from relay.wire import split_batch

    items = [b"", b"a" * 200, bytes(range(256))]
    assert split_batch(b"".join(_length_prefixed(i) for i in items)) == items
    with pytest.raises(ValueError):
        split_batch(b"\x0a\x09abc")


def test_in_order_runs_release_what_single_pushes_release():
    """push_run (the relay's path for a batch in time order) against push one by one: the same
    responses released at each step and the same order when drained, ties and small buffers included."""
    rng = random.Random(11)
    for max_len in (1, 2, 5, 100):
        one, runs = SortBuffer(max_len), SortBuffer(max_len)
        now, serial, got_one, got_runs = 0, 0, [], []
        for _ in range(300):
            if rng.random() < 0.3:  # out of order (another node): both take single pushes
                t = now - rng.randrange(0, 50)
                wire = b"%d" % serial
                serial += 1
                got_one.append(one.push(t, wire))
                got_runs.append(runs.push(t, wire))
                continue
            start = max(now, runs.newest) + rng.choice((0, 0, 1, 7))
            times = sorted(start + rng.randrange(0, 20) for _ in range(rng.randrange(1, 40)))
            wires = [b"%d" % (serial + i) for i in range(len(times))]
            serial += len(times)
            released = [out for t, w in zip(times, wires, strict=True) if (out := one.push(t, w)) is not None]
            assert runs.push_run(times, wires) == released
            now = times[-1]
        assert got_one == got_runs
        assert list(one.drain()) == list(runs.drain())
