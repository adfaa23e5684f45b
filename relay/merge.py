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
        self.newest = -1  # the largest time pushed so far

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, time_ns: int, wire: bytes) -> bytes | None:
        """Add a response; returns the response that must be sent now (the oldest) when full."""
        item = (time_ns, next(self._counter), wire)
        if time_ns > self.newest:
            self.newest = time_ns
        if len(self._heap) >= self.max_len:
            return heapq.heappushpop(self._heap, item)[2]
        heapq.heappush(self._heap, item)
        return None

    def push_run(self, times: list[int], wires: list[bytes]) -> list[bytes]:
        """:meth:`push` of each response of a run, for a run in time order that starts no earlier
        than anything pushed before (``times[0] >= newest``); returns what those pushes release.

        Each push then releases the oldest held response (every held one is older or as old and
        arrived first), so the buffer is a delay line: the held responses in order, then the run,
        release all but the last ``max_len``. A sorted list is a valid heap, so :meth:`push` and
        :meth:`drain` go on from there.
        """
        counter = self._counter
        run = [(t, next(counter), w) for t, w in zip(times, wires, strict=True)]
        held = sorted(self._heap) if self._heap else []
        line = held + run if held else run
        keep = len(line) - self.max_len
        if times and times[-1] > self.newest:
            self.newest = times[-1]
        if keep <= 0:
            self._heap = line
            return []
        self._heap = line[keep:]
        return [item[2] for item in line[:keep]]

    def drain(self) -> Iterator[bytes]:
        """Release everything, oldest first."""
        heap = self._heap
        while heap:
            yield heapq.heappop(heap)[2]
