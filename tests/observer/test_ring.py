"""Ring buffer: capacity rules, overwrite counting and lost-entry reporting."""

import threading

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
