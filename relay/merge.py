"""The relay's sort buffer: merge responses from several nodes into time order.

Same algorithm as upstream's relay: responses go into a priority queue ordered by time. When the
queue holds ``max_len`` items, the oldest is sent before the new one is added. When no response has
arrived for ``drain_timeout`` seconds, the whole queue is sent. At the end of the input the queue is
sent in order. With ``max_len`` at least the total number of responses this is a full sort.

A node's indexed batch (:class:`~relay.wire.Run`: gRPC-framed responses with their times) that is
in time order and no older than anything pushed before goes in whole (:meth:`SortBuffer.push_frames`)
while nothing else is held: the buffer is then a delay line, held as the runs' framed bytes, and
releases slices of them, exactly what pushing the responses one by one would release.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator
from typing import Any

Item = tuple[int, int, bytes]  # (time_ns, arrival number, wire bytes)


class SortBuffer:
    """Bounded priority queue of ``(time_ns, bytes)`` that releases the oldest entries."""

    def __init__(self, max_len: int) -> None:
        self.max_len = max(1, max_len)
        self._heap: list[Item] = []
        self._counter = itertools.count()
        self.newest = -1  # the largest time pushed so far
        # held framed runs, oldest first, while the heap is empty: [frames, times, ends, first held]
        self._segments: list[list[Any]] = []
        self._held = 0  # responses held in ``_segments``

    def __len__(self) -> int:
        return len(self._heap) + self._held

    def _settle(self) -> None:
        """Turn the held framed runs into heap items (in order, so the list stays a valid heap)."""
        counter = self._counter
        heap = self._heap
        for frames, times, ends, lo in self._segments:
            view = memoryview(frames)
            start = ends[lo - 1] if lo else 0
            for i in range(lo, len(ends)):
                end = ends[i]
                heap.append((times[i], next(counter), bytes(view[start + 5 : end])))
                start = end
        self._segments.clear()
        self._held = 0

    def push_frames(self, run: Any) -> list[Any] | None:
        """The responses of ``run`` (a :class:`~relay.wire.Run`) pushed in order, when the buffer holds
        nothing but earlier runs and the run is in time order, no earlier than anything pushed before;
        returns the framed bytes those pushes release (slices of the runs, oldest first), or None
        (nothing done) when the run cannot go in whole."""
        times = run.times
        n = len(times)
        if not n:
            return []
        if self._heap or times[0] < self.newest or (n > 1 and not (times[1:] >= times[:-1]).all()):
            return None
        listed = times.tolist()
        if listed[-1] > self.newest:
            self.newest = listed[-1]
        segments = self._segments
        segments.append([run.frames, listed, run.ends.tolist(), 0])
        self._held += n
        keep = self._held - self.max_len
        out: list[Any] = []
        while keep > 0:
            segment = segments[0]
            frames, _, ends, lo = segment
            take = min(len(ends) - lo, keep)
            start = ends[lo - 1] if lo else 0
            stop = ends[lo + take - 1]
            out.append(frames if not start and stop == len(frames) else memoryview(frames)[start:stop])
            keep -= take
            self._held -= take
            if lo + take == len(ends):
                segments.pop(0)
            else:
                segment[3] = lo + take
        return out

    def push(self, time_ns: int, wire: bytes) -> bytes | None:
        """Add a response; returns the response that must be sent now (the oldest) when full."""
        if self._segments:
            self._settle()
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
        if self._segments:
            self._settle()
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
        if self._segments:
            self._settle()
        heap = self._heap
        while heap:
            yield heapq.heappop(heap)[2]
