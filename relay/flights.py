"""Identical non-follow GetFlows requests that arrive together share one fan-out ("flights").

Twenty clients asking ``--last 1000`` at the same moment would otherwise make the relay ask every
node twenty times and merge the same responses twenty times. A request joins a flight that is
still being answered, was started at most :data:`JOIN_WINDOW_S` ago and has byte-identical request
and relay-relevant metadata; every reader then gets the same response bytes, in the same order.

What a joiner gets is the answer computed for the first request: the nodes' rings as they were up
to ``JOIN_WINDOW_S`` before the joiner asked. A flight stays joinable for that window even once it
is complete (its answer is kept that long), so clients that ask a little after a quick answer was
finished still share it; a flight that failed or was cancelled is never joined. Follow requests, requests for more than
:data:`MAX_SHARED_NUMBER` flows (the flight keeps every response until its last reader is done) and
requests with ``number == 0`` (everything) are never shared.

The flight is produced by its own thread so that no reader's cancellation stops the others; it is
cancelled when its last reader leaves.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

log = logging.getLogger(__name__)

JOIN_WINDOW_S = 0.25
MAX_SHARED_NUMBER = 10_000
_NOTIFY_EVERY = 64


class FlightError(Exception):
    """The shared answer failed; ``code`` and ``details`` are its gRPC status."""

    def __init__(self, code: Any, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class _FlightContext:
    """The context a flight's producer runs with: active while any reader is."""

    def __init__(self, flight: Flight, metadata: tuple) -> None:
        self._flight = flight
        self._metadata = metadata

    def is_active(self) -> bool:
        return not self._flight.cancelled.is_set()

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return self._flight.add_callback(callback)

    def invocation_metadata(self) -> tuple:
        return self._metadata

    def send_initial_metadata(self, metadata: Any) -> None:
        pass  # each reader sends its own

    def set_trailing_metadata(self, metadata: Any) -> None:
        self._flight.trailing = tuple(metadata)

    def abort(self, code: Any, details: str) -> None:
        raise FlightError(code, details)


class Flight:
    """One answer being produced, readable by any number of readers from the start."""

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.started = time.monotonic()
        self.items: list[Any] = []  # response bytes, or runs of framed responses (Frames, FrameViews)
        self.done = False
        self.error: FlightError | None = None
        self.trailing: tuple = ()
        self.readers = 0
        self.cancelled = threading.Event()
        self.cond = threading.Condition(threading.Lock())
        self.callbacks: list[Callable[[], None]] = []

    def add_callback(self, callback: Callable[[], None]) -> bool:
        with self.cond:
            if self.cancelled.is_set():
                return False
            self.callbacks.append(callback)
            return True

    def produce(self, stream: Iterator[Any]) -> None:
        """Producer thread: append every item of ``stream`` and wake the readers."""
        items = self.items
        cond = self.cond
        try:
            for count, item in enumerate(stream, 1):
                items.append(item)
                # b"": the producer is about to wait; a long item (or buffers of one, a tuple) is a
                # run of framed messages
                if not item or len(item) > 4096 or isinstance(item, tuple) or count % _NOTIFY_EVERY == 0:
                    with cond:
                        cond.notify_all()
        except FlightError as exc:
            self.error = exc
        except Exception as exc:
            log.exception("shared GetFlows failed")
            self.error = FlightError(None, f"relay error: {exc}")
        finally:
            with cond:
                self.done = True
                cond.notify_all()

    def read(self, is_active: Callable[[], bool]) -> Iterator[Any]:
        """Every item from the first, as the producer appends them, until it is done."""
        index = 0
        items = self.items
        try:
            while True:
                end = len(items)
                while index < end:
                    yield items[index]
                    index += 1
                if self.done and index >= len(items):
                    break
                if not is_active():
                    return
                with self.cond:
                    if not self.done and len(items) <= index:
                        self.cond.wait(0.25)
            if self.error is not None:
                raise self.error
        finally:
            self.leave()

    def leave(self) -> None:
        with self.cond:
            self.readers -= 1
            last = self.readers <= 0 and not self.done
            callbacks = self.callbacks if last else []
            if last:
                self.cancelled.set()
                self.callbacks = []
        for callback in callbacks:
            callback()


class Flights:
    """The flights in progress, by request key."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.open: dict[bytes, Flight] = {}
        self.shared = 0  # requests answered by joining a flight (metrics, tests)

    def join_or_start(self, key: bytes, metadata: tuple, start: Callable[[Any], Iterator[Any]]) -> Flight:
        """The flight for ``key``, joined; a new one (produced by ``start(context)``) when none is open."""
        now = time.monotonic()
        with self.lock:
            flight = self.open.get(key)
            if flight is not None and flight.error is None and now - flight.started <= JOIN_WINDOW_S:
                with flight.cond:
                    if not flight.cancelled.is_set():
                        flight.readers += 1
                        self.shared += 1
                        return flight
            flight = Flight(key)
            flight.readers = 1
            self.open[key] = flight
        context = _FlightContext(flight, metadata)

        def run() -> None:
            try:
                flight.produce(start(context))
                # a complete answer stays joinable until the window ends
                rest = JOIN_WINDOW_S - (time.monotonic() - flight.started)
                if rest > 0 and flight.error is None:
                    time.sleep(rest)
            finally:
                with self.lock:
                    if self.open.get(key) is flight:
                        del self.open[key]

        threading.Thread(target=run, daemon=True, name="relay-flight").start()
        return flight
