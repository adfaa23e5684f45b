"""Fixed-size ring buffer of observed events with overwrite counting.

The ring keeps the newest ``capacity`` entries (``capacity`` is ``2**n - 1``, default 4095, like
upstream Hubble). Every write gets a sequence number; a reader remembers the sequence it wants next.
When the writer has overwritten that position, :meth:`Ring.read` tells the reader how many entries it
lost so the reader can report a ``LostEvent`` instead of skipping silently.

One writer thread and any number of reader threads. Writes never block on readers: a slow reader
only loses entries, it never makes the ring grow. Readers in follow mode wait on a condition that
the writer signals only when someone is waiting.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

DEFAULT_CAPACITY = 4095
MAX_CAPACITY = 65535


class RingEntry:
    """One event in the ring: its time, its canonical response dict and cached wire bytes.

    ``response`` is a canonical ``observer.GetFlowsResponse`` dict (with ``flow`` or
    ``lost_events``), or a ``GetAgentEventsResponse``/``GetDebugEventsResponse`` dict in the
    agent/debug rings. ``wire`` caches the serialized protobuf of the whole response, built by the
    first reader that needs it; ``masked`` caches one field-masked variant as ``(mask_key, bytes)``;
    ``json``/``masked_json`` do the same for the canonical JSON line served to hubblepy clients.
    """

    __slots__ = ("time_ns", "response", "flow", "wire", "masked", "json", "masked_json")

    def __init__(self, time_ns: int, response: dict[str, Any]) -> None:
        self.time_ns = time_ns
        self.response = response
        self.flow: dict[str, Any] | None = response.get("flow")
        self.wire: bytes | None = None
        self.masked: tuple[Any, bytes] | None = None
        self.json: bytes | None = None  # canonical JSON line (with "\n") for hubblepy clients
        self.masked_json: tuple[Any, bytes] | None = None


def validate_capacity(capacity: int) -> None:
    """Raise ValueError unless ``capacity`` is ``2**n - 1`` with ``1 <= capacity <= 65535``."""
    if capacity < 1 or capacity > MAX_CAPACITY or (capacity + 1) & capacity:
        raise ValueError(
            f"invalid event buffer capacity {capacity}: must be 2^n-1 (1, 3, 7, ..., 4095, ..., 65535)"
        )


class Ring:
    """Ring buffer of :class:`RingEntry`, addressed by monotonically increasing sequence numbers."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        validate_capacity(capacity)
        self.capacity = capacity
        self._size = capacity + 1
        self._mask = self._size - 1
        self._slots: list[RingEntry | None] = [None] * self._size
        self._next = 0  # sequence number of the next write
        self._cond = threading.Condition(threading.Lock())
        self._waiters = 0
        self._closed = False
        self.readers_lost = 0  # entries readers lost because the writer lapped them (metrics)

    # -- writer side ---------------------------------------------------------------------------
    def write(self, entry: RingEntry) -> None:
        """Append one entry, overwriting the oldest when full."""
        seq = self._next
        self._slots[seq & self._mask] = entry
        self._next = seq + 1
        if self._waiters:
            with self._cond:
                self._cond.notify_all()

    def write_many(self, entries: Iterable[RingEntry]) -> None:
        """Append entries in order; readers are woken once for the whole batch."""
        slots, mask, seq = self._slots, self._mask, self._next
        for entry in entries:
            slots[seq & mask] = entry
            seq += 1
            self._next = seq
        if self._waiters:
            with self._cond:
                self._cond.notify_all()

    def close(self) -> None:
        """Wake every waiting reader for good (used at shutdown)."""
        self._closed = True
        with self._cond:
            self._cond.notify_all()

    # -- reader side ---------------------------------------------------------------------------
    @property
    def next_seq(self) -> int:
        """Sequence number the next write will get (= number of entries ever written)."""
        return self._next

    @property
    def oldest_seq(self) -> int:
        """Sequence number of the oldest entry still readable."""
        return max(0, self._next - self.capacity)

    def __len__(self) -> int:
        return min(self._next, self.capacity)

    @property
    def overwritten(self) -> int:
        """How many entries were dropped because the ring was full."""
        return max(0, self._next - self.capacity)

    def read(self, seq: int) -> tuple[RingEntry | None, int]:
        """Read entry ``seq``; returns ``(entry, lost)``.

        ``lost > 0`` means the entries from ``seq`` to ``seq + lost - 1`` were overwritten: the
        caller should report them and continue at ``seq + lost``; ``entry`` is then None. When
        ``seq`` has not been written yet the result is ``(None, 0)``.
        """
        oldest = self._next - self.capacity
        if seq < oldest:
            return None, oldest - seq
        if seq >= self._next:
            return None, 0
        entry = self._slots[seq & self._mask]
        # The writer may have lapped us while we read the slot: re-check validity afterwards.
        oldest = self._next - self.capacity
        if seq < oldest:
            return None, oldest - seq
        return entry, 0

    def wait(self, seq: int, timeout: float) -> bool:
        """Block until entry ``seq`` exists (True) or ``timeout`` seconds pass / the ring closes."""
        if self._next > seq:
            return True
        with self._cond:
            self._waiters += 1
            try:
                if self._next <= seq and not self._closed:
                    self._cond.wait(timeout)
            finally:
                self._waiters -= 1
        return self._next > seq
