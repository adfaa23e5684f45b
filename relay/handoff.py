"""Bounded many-producers / one-consumer handoff with batched wakeups.

``queue.Queue`` takes a lock and signals a condition on every put and get; at tens of thousands of
responses per second that costs more than the relay's own work. Here producers append to a deque
and signal only when the consumer is asleep; the consumer takes everything queued at once. A
producer waits while the handoff holds ``limit`` items, so a slow client slows the node streams
(and the nodes report LostEvents) instead of growing the relay's memory. An item may stand for
several responses (a node's indexed batch): :meth:`put` takes its ``weight``, and the limit counts
responses.
"""

from __future__ import annotations

import collections
import threading
from typing import Any


class Handoff:
    """Deque-based handoff; :meth:`put` blocks when full, :meth:`take` returns a batch."""

    def __init__(self, limit: int) -> None:
        self._items: collections.deque[Any] = collections.deque()
        self._limit = limit
        self._cond = threading.Condition(threading.Lock())
        self._consumer_waiting = False
        self._producers_waiting = 0
        self._extra = 0  # weights above 1 of the queued items (approximate: reset by take)

    def __len__(self) -> int:
        return len(self._items)

    def _load(self) -> int:
        return len(self._items) + self._extra

    def put(self, item: Any, cancelled: threading.Event, weight: int = 1) -> bool:
        """Add ``item`` (standing for ``weight`` responses); False when ``cancelled`` was set while
        waiting for room."""
        if self._load() >= self._limit and not self._wait_for_room(cancelled):
            return False
        if weight > 1:
            self._extra += weight - 1
        self._items.append(item)
        if self._consumer_waiting:
            with self._cond:
                self._cond.notify_all()
        return True

    def put_many(self, items: list[Any], cancelled: threading.Event) -> bool:
        """Add several items at once (one wakeup); False when cancelled while waiting for room."""
        if self._load() >= self._limit and not self._wait_for_room(cancelled):
            return False
        self._items.extend(items)
        if self._consumer_waiting:
            with self._cond:
                self._cond.notify_all()
        return True

    def _wait_for_room(self, cancelled: threading.Event) -> bool:
        with self._cond:
            self._producers_waiting += 1
            try:
                while self._load() >= self._limit:
                    if cancelled.is_set():
                        return False
                    self._cond.wait(0.1)
            finally:
                self._producers_waiting -= 1
        return True

    def take(self, timeout: float) -> list[Any]:
        """Everything queued (waiting up to ``timeout`` seconds for the first item); [] on timeout."""
        items = self._items
        if not items:
            with self._cond:
                self._consumer_waiting = True
                try:
                    if not items:
                        self._cond.wait(timeout)
                finally:
                    self._consumer_waiting = False
        count = len(items)
        self._extra = 0
        batch = [items.popleft() for _ in range(count)]
        if self._producers_waiting:
            with self._cond:
                self._cond.notify_all()
        return batch
