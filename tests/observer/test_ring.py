"""Ring buffer: capacity rules, overwrite counting, lost-entry reporting and the writer's turn."""

import threading
import time

import pytest

from hubblepy.observer.ring import Ring, RingEntry, validate_capacity


def entry(i: int) -> RingEntry:
    return RingEntry(i, {"flow": {"uuid": str(i)}})


@pytest.mark.parametrize("capacity", [1, 3, 7, 4095, 65535])
def test_valid_capacities(capacity):
    validate_capacity(capacity)


@pytest.mark.parametrize("capacity", [0, 2, 4096, 100, 131071])
def test_invalid_capacities(capacity):
    with pytest.raises(ValueError, match="2\\^n-1"):
        validate_capacity(capacity)


def test_keeps_newest_capacity_entries_and_counts_overwrites():
    ring = Ring(7)
    ring.write_many(entry(i) for i in range(20))
    assert len(ring) == 7
    assert ring.overwritten == 13
    assert ring.oldest_seq == 13
    assert [ring.read(s)[0].time_ns for s in range(13, 20)] == list(range(13, 20))


def test_reader_that_falls_behind_is_told_how_many_it_lost():
    ring = Ring(3)
    ring.write_many(entry(i) for i in range(2))
    ring.write_many(entry(i) for i in range(2, 10))
    got, lost = ring.read(1)
    assert got is None and lost == 6  # entries 1..6 were overwritten; 7, 8, 9 remain
    assert ring.read(7)[0].time_ns == 7


def test_read_past_the_end_is_empty_not_lost():
    ring = Ring(3)
    ring.write(entry(0))
    assert ring.read(1) == (None, 0)


def test_wait_wakes_on_write_and_times_out_without():
    ring = Ring(3)
    assert ring.wait(0, 0.01) is False
    threading.Timer(0.05, ring.write, args=(entry(0),)).start()
    assert ring.wait(0, 5.0) is True


def test_writer_turn_is_visible_and_ends_even_on_error():
    ring = Ring(7)
    assert not ring.writer_busy and ring.yield_to_writer(0)
    with pytest.raises(RuntimeError), ring.ingesting():
        assert ring.writer_busy
        assert ring.yield_to_writer(0) is False  # a reader would wait
        raise RuntimeError("source failed mid-batch")
    assert not ring.writer_busy and ring.yield_to_writer(0)


class _WatchedEvent(threading.Event):
    """An Event that tells when someone starts waiting on it."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = threading.Event()

    def wait(self, timeout=None):
        self.waiting.set()
        return super().wait(timeout)


def test_follower_reads_nothing_during_the_writers_turn_then_everything(monkeypatch):
    from hubblepy.api.observer import observer_pb2
    from hubblepy.observer import ring as ring_module
    from hubblepy.observer.service import select_entries

    monkeypatch.setattr(ring_module, "WRITER_TURN_MAX_S", 30.0)
    ring = Ring(15)
    gate = _WatchedEvent()
    gate.set()
    ring._writer_idle = gate
    stop = threading.Event()
    got = []
    request = observer_pb2.GetFlowsRequest(follow=True, first=True)  # from the oldest entry on

    def follow():
        active = lambda: not stop.is_set()  # noqa: E731
        for item in select_entries(ring, request, active, stop=stop):
            got.append(item.flow["uuid"])

    def wait_for(n):
        deadline = time.monotonic() + 10
        while len(got) < n and time.monotonic() < deadline:
            time.sleep(0.005)

    ring.write(entry(0))
    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    wait_for(1)
    assert got == ["0"]
    with ring.ingesting():
        ring.write_many(entry(i) for i in range(1, 6))
        assert gate.waiting.wait(10), "the follower never reached the writer's turn"
        assert got == ["0"]  # it waits for the turn to end instead of decoding beside the writer
    wait_for(6)
    stop.set()
    ring.close()
    thread.join(10)
    assert got == [str(i) for i in range(6)]


def test_reader_lapped_in_a_later_decode_chunk_reports_the_rest_as_lost():
    from hubblepy.api.observer import observer_pb2
    from hubblepy.observer.service import DECODE_CHUNK, select_entries

    ring = Ring(1023)
    ring.write_many(entry(i) for i in range(1000))
    items = select_entries(ring, observer_pb2.GetFlowsRequest(first=True), lambda: True)
    got = [next(items).flow["uuid"] for _ in range(DECODE_CHUNK + 2)]  # into the second chunk
    ring.write_many(entry(i) for i in range(1000, 3000))  # the writer laps the paused reader
    rest = list(items)
    lost = [item for item in rest if isinstance(item, int)]
    got += [item.flow["uuid"] for item in rest if not isinstance(item, int)]
    # the second chunk was read before the lap; the third is lost from its first entry on
    assert got == [str(i) for i in range(2 * DECODE_CHUNK)]
    assert lost == [ring.oldest_seq - 2 * DECODE_CHUNK]


@pytest.mark.parametrize("before, count", [(0, 3), (5, 6), (6, 2), (2, 7), (3, 20)])
def test_undecoded_records_fill_their_slots_across_the_wrap(before, count):
    """Records written in one batch (the access log's) land in order, each with the batch's kind,
    time and snapshot, also where the batch wraps around the end of the arrays or outgrows the ring."""
    from hubblepy.observer.ring import KIND_DECODED, KIND_L7

    ring = Ring(7)
    ring.write_many(entry(i) for i in range(before))
    ring.write_records(KIND_L7, 1234, [f"record {i}" for i in range(count)], snapshot=9)
    assert ring.next_seq == before + count
    kept = min(count, ring.capacity)
    start = before + count - kept
    slots = ring.slots(start, before + count)
    assert [ring._objs[s] for s in slots.tolist()] == [f"record {i}" for i in range(count - kept, count)]
    assert ring.kind[slots].tolist() == [KIND_L7] * kept
    assert ring.time[slots].tolist() == [1234] * kept
    assert ring.snapshot[slots].tolist() == [9] * kept
    survivors = ring.slots(max(before + count - ring.capacity, 0), start)
    assert ring.kind[survivors].tolist() == [KIND_DECODED] * len(survivors)
    assert ring.oldest_seq == max(before + count - ring.capacity, 0)
