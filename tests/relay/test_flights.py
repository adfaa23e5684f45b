"""Shared answers for identical non-follow requests (relay.flights), with real threads."""

from __future__ import annotations

import threading
import time

import pytest

from relay import flights as flights_mod
from relay.flights import FlightError, Flights


class Producer:
    """A GetFlows-like stream that waits for ``go`` before its items, counting how often it ran."""

    def __init__(self, items: list[bytes], fail: bool = False) -> None:
        self.items = items
        self.fail = fail
        self.runs = 0
        self.go = threading.Event()
        self.cancelled = threading.Event()
        self.contexts: list = []

    def __call__(self, context):
        self.runs += 1
        self.contexts.append(context)
        context.add_callback(self.cancelled.set)
        return self._stream(context)

    def _stream(self, context):
        yield b""  # about to wait
        while not self.go.wait(0.01):
            if not context.is_active():
                return
        yield from self.items
        if self.fail:
            context.abort("CODE", "node stream broke")


def test_identical_requests_share_one_run_and_get_the_same_items():
    shared = Flights()
    items = [b"r%d" % i for i in range(500)]
    producer = Producer(items)
    first = shared.join_or_start(b"k", (), producer)
    second = shared.join_or_start(b"k", (), producer)
    assert first is second and producer.runs == 1 and shared.shared == 1
    results: list[list[bytes]] = [[], []]
    threads = [
        threading.Thread(target=lambda i=i: results[i].extend(first.read(lambda: True))) for i in range(2)
    ]
    for t in threads:
        t.start()
    producer.go.set()
    for t in threads:
        t.join(10)
    assert results[0] == results[1] == [b"", *items]


def test_other_keys_and_old_flights_are_not_joined_done_ones_are_within_the_window(monkeypatch):
    shared = Flights()
    a, b = Producer([b"a"]), Producer([b"b"])
    fa = shared.join_or_start(b"a", (), a)
    fb = shared.join_or_start(b"b", (), b)
    assert fa is not fb
    a.go.set()
    assert list(fa.read(lambda: True)) == [b"", b"a"]
    assert fa.done
    again = Producer([b"a2"])
    assert shared.join_or_start(b"a", (), again) is fa  # complete, still within the window: shared
    assert list(fa.read(lambda: True)) == [b"", b"a"] and again.runs == 0
    monkeypatch.setattr(flights_mod, "JOIN_WINDOW_S", 0.0)
    time.sleep(0.01)
    late = Producer([b"late"])
    assert shared.join_or_start(b"b", (), late) is not fb  # b's flight started too long ago
    fa2 = shared.join_or_start(b"a", (), again)  # so did a's: a new run
    assert fa2 is not fa and again.runs == 1
    for p in (b, again, late):
        p.go.set()
    assert list(fa2.read(lambda: True)) == [b"", b"a2"]


def test_a_complete_flight_is_dropped_after_the_window(monkeypatch):
    monkeypatch.setattr(flights_mod, "JOIN_WINDOW_S", 0.2)
    shared = Flights()
    producer = Producer([b"x"])
    producer.go.set()
    flight = shared.join_or_start(b"k", (), producer)
    assert list(flight.read(lambda: True)) == [b"", b"x"]
    deadline = time.monotonic() + 10
    while b"k" in shared.open:  # kept for the window, then dropped
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_one_reader_leaving_keeps_the_flight_the_last_cancels_it():
    shared = Flights()
    producer = Producer([b"x"] * 10)
    flight = shared.join_or_start(b"k", (), producer)
    shared.join_or_start(b"k", (), producer)
    gone = threading.Event()
    reader = flight.read(lambda: not gone.is_set())
    assert next(reader) == b""
    gone.set()
    assert list(reader) == []  # this reader stops: it is no longer active
    assert not producer.cancelled.is_set()
    other = flight.read(lambda: not gone.is_set())
    assert next(other) == b""
    other.close()  # the last reader leaves before the end
    assert producer.cancelled.wait(5)
    assert flight.cancelled.is_set()


def test_producer_error_reaches_every_reader():
    shared = Flights()
    producer = Producer([b"x"], fail=True)
    flight = shared.join_or_start(b"k", (), producer)
    producer.go.set()
    with pytest.raises(FlightError) as err:
        list(flight.read(lambda: True))
    assert err.value.code == "CODE" and err.value.details == "node stream broke"
    retry = Producer([b"y"])
    assert shared.join_or_start(b"k", (), retry) is not flight  # a failed answer is not shared
    retry.go.set()
