"""The relay's sort buffer: merge responses from several nodes into time order.

Same algorithm as upstream's relay: responses go into a priority queue ordered by time. When the
queue holds ``max_len`` items, the oldest is sent before the new one is added. When no response has
arrived for ``drain_timeout`` seconds, the whole queue is sent. At the end of the input the queue is
sent in order. With ``max_len`` at least the total number of responses this is a full sort.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator

Item = tuple[int, int, bytes]  # (time_ns, arrival number, wire bytes)


class SortBuffer:
    """Bounded priority queue of ``(time_ns, bytes)`` that releases the oldest entries."""

    def __init__(self, max_len: int) -> None:
        self.max_len = max(1, max_len)
        self._heap: list[Item] = []
        self._counter = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, time_ns: int, wire: bytes) -> bytes | None:
        """Add a response; returns the response that must be sent now (the oldest) when full."""
        item = (time_ns, next(self._counter), wire)
        if len(self._heap) >= self.max_len:
            return heapq.heappushpop(self._heap, item)[2]
        heapq.heappush(self._heap, item)
        return None

    def drain(self) -> Iterator[bytes]:
        """Release everything, oldest first."""
        heap = self._heap
        while heap:
            yield heapq.heappop(heap)[2]
