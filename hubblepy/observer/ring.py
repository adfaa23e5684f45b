"""Fixed-size ring buffer of observed events with overwrite counting, stored as columns.

The ring keeps the newest ``capacity`` entries (``capacity`` is ``2**n - 1``, default 4095, like
upstream Hubble). Every write gets a sequence number; a reader remembers the sequence it wants next.
When the writer has overwritten that position, :meth:`Ring.read` tells the reader how many entries it
lost so the reader can report a ``LostEvent`` instead of skipping silently.

Two kinds of entries share the ring:

* *decoded* entries: a :class:`RingEntry` (response dict) written with :meth:`Ring.write` /
  :meth:`Ring.write_many` (replayed flows, LostEvents, agent and debug events);
* *raw* entries: datapath samples written in batches with :meth:`Ring.write_raw`. The ring keeps
  the batch's bytes (shared by its samples), each sample's offset and length, its time, CPU,
  batch number, resolver snapshot and the first 32 bytes of its header (message type, subtype, endpoint,
  identities, verdict, flags at fixed offsets) in preallocated numpy arrays. A raw entry is decoded into a :class:`RingEntry` only
  when a reader asks for it (``decoder``), once: the result is cached in the slot for every other
  reader. Readers can test columns over whole ranges first (:meth:`Ring.columns`) and decode only
  what passes.

One writer thread and any number of reader threads. Writes never block on readers: a slow reader
only loses entries, it never makes the ring grow. Before a batch overwrites slots the writer raises
the *floor* (the oldest sequence still readable), so a reader that read a slot while it was being
rewritten notices it on the re-check and reports the entry lost instead of returning torn data.
Readers in follow mode wait on a condition that the writer signals only when someone is waiting.

The writer has priority over readers in the same process: while it takes a batch in (inside
:meth:`Ring.ingesting`), readers that call :meth:`Ring.yield_to_writer` between their decode
batches wait for it instead of competing for the GIL. Without that, a follower decoding flat out
made every GIL-releasing call of the perf reader (epoll, numpy over a batch) wait a whole switch
interval, and the kernel's perf ring overflowed at rates the reader alone keeps up with.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

DEFAULT_CAPACITY = 4095
MAX_CAPACITY = 65535

KIND_DECODED = 0  # a RingEntry in the slot's object column
KIND_RAW = 1  # a datapath sample: bytes of its batch at (offset, length), decoded on demand
KIND_L7 = 2  # an L7 proxy's access-log record with what it correlated on arrival, decoded on demand

# bytes per slot of the preallocated columns (kind 1, time 8, offset 8, length 4, CPU 2, header 32,
# snapshot 4, batch 4) and of the object columns (two pointers; a decoded entry adds its (seq, entry) tuple)
COLUMN_BYTES_PER_SLOT = 1 + 8 + 8 + 4 + 2 + 32 + 4 + 4 + 16
WRITER_TURN_MAX_S = 0.05  # a reader waits at most this long for the writer's turn to end


class RingEntry:
    """One event in the ring: its time, its canonical response dict and cached wire bytes.

    ``response`` is a canonical ``observer.GetFlowsResponse`` dict (with ``flow`` or
    ``lost_events``), or a ``GetAgentEventsResponse``/``GetDebugEventsResponse`` dict in the
    agent/debug rings. ``wire`` caches the serialized protobuf of the whole response, built by the
    first reader that needs it; ``masked`` caches one field-masked variant as ``(mask_key, bytes)``;
    ``json``/``masked_json`` do the same for the canonical JSON line served to hubblepy clients.
    """

    __slots__ = ("time_ns", "response", "flow", "wire", "masked", "json", "masked_json", "shape")

    def __init__(self, time_ns: int, response: dict[str, Any]) -> None:
        self.time_ns = time_ns
        self.response = response
        self.flow: dict[str, Any] | None = response.get("flow")
        self.wire: bytes | None = None
        self.masked: tuple[Any, bytes] | None = None
        self.json: bytes | None = None  # canonical JSON line (with "\n") for hubblepy clients
        self.masked_json: tuple[Any, bytes] | None = None
        # an access-log row's flow shape (SevenParser.decode_row_shaped): its wire bytes come from it
        self.shape: tuple[dict, dict, dict] | None = None


class RawColumns:
    """One batch of raw samples as :meth:`Ring.write_raw` takes them (equal lengths).

    ``head`` holds the first ``HEADER_WORDS`` u32 words of each sample (type, subtype, source
    endpoint, identities, verdict, flags: see :mod:`hubblepy.observer.records`).
    """

    __slots__ = ("offsets", "lengths", "cpus", "head")

    def __init__(self, offsets: np.ndarray, lengths: np.ndarray, cpus: np.ndarray, head: np.ndarray) -> None:
        self.offsets = offsets
        self.lengths = lengths
        self.cpus = cpus
        self.head = head

    def __len__(self) -> int:
        return len(self.offsets)

    def take(self, index: np.ndarray | slice) -> RawColumns:
        return RawColumns(self.offsets[index], self.lengths[index], self.cpus[index], self.head[index])


# decoder(items) -> one RingEntry or None per item; item = (seq, time_ns, kind, payload, snapshot) where
# the payload is the sample's bytes (KIND_RAW) or the object stored with write_records (KIND_L7)
RawDecoder = Callable[[list[tuple[int, int, int, Any, int]]], list["RingEntry | None"]]
HEADER_WORDS = 8  # u32 words of each sample's header kept in the ring (32 bytes)


def validate_capacity(capacity: int) -> None:
    """Raise ValueError unless ``capacity`` is ``2**n - 1`` with ``1 <= capacity <= 65535``."""
    if capacity < 1 or capacity > MAX_CAPACITY or (capacity + 1) & capacity:
        raise ValueError(
            f"invalid event buffer capacity {capacity}: must be 2^n-1 (1, 3, 7, ..., 4095, ..., 65535)"
        )


class Ring:
    """Ring buffer of events, addressed by monotonically increasing sequence numbers."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        validate_capacity(capacity)
        self.capacity = capacity
        self._size = size = capacity + 1
        self._mask = size - 1
        self._objs: list[Any] = [None] * size  # RingEntry (decoded) or the batch bytes (raw)
        # decoded raw entries as (seq, entry or None when it did not decode), one tuple per slot
        self._cache: list[tuple[int, RingEntry | None] | None] = [None] * size
        self.kind = np.zeros(size, dtype=np.uint8)
        self.time = np.zeros(size, dtype=np.int64)
        self.offset = np.zeros(size, dtype=np.int64)
        self.length = np.zeros(size, dtype=np.uint32)
        self.cpu = np.zeros(size, dtype=np.uint16)
        self.head = np.zeros((size, HEADER_WORDS), dtype=np.uint32)
        self.snapshot = np.zeros(size, dtype=np.uint32)
        # which write_raw call a raw slot's bytes came in (slots of one call share one bytes object)
        self.batch = np.zeros(size, dtype=np.uint32)
        self._batches = 0
        self.decoder: RawDecoder | None = None
        self._next = 0  # sequence number of the next write
        self._floor = 0  # oldest sequence a reader may still trust (raised before slots are rewritten)
        self._cond = threading.Condition(threading.Lock())
        self._waiters = 0
        self._closed = False
        self.readers_lost = 0  # entries readers lost because the writer lapped them (metrics)
        self._writer_idle = threading.Event()
        self._writer_idle.set()

    # -- writer side ---------------------------------------------------------------------------
    def write(self, entry: RingEntry) -> None:
        """Append one decoded entry, overwriting the oldest when full."""
        self.write_many((entry,))

    def write_many(self, entries: Iterable[RingEntry]) -> None:
        """Append decoded entries in order; readers are woken once for the whole batch."""
        if not isinstance(entries, Sequence):
            entries = list(entries)
        n = len(entries)
        if not n:
            return
        seq = self._next
        if n > self.capacity:  # only the newest ``capacity`` survive the write
            skip = n - self.capacity
            entries = entries[skip:]
            seq += skip
            n = self.capacity
        self._floor = max(self._floor, seq + n - self.capacity)
        mask, objs, kind, time = self._mask, self._objs, self.kind, self.time
        for entry in entries:
            slot = seq & mask
            objs[slot] = entry
            kind[slot] = KIND_DECODED
            time[slot] = entry.time_ns
            seq += 1
        self._next = seq
        self._wake()

    def write_raw(self, data: bytes, time_ns: int, cols: RawColumns, snapshot: int) -> None:
        """Append a batch of raw samples that live in ``data`` (see :class:`RawColumns`).

        The whole batch shares ``time_ns`` and the resolver ``snapshot`` number the decoder uses.
        """
        n = len(cols)
        if not n:
            return
        skip, runs, end = self._reserve(n)
        if skip:
            cols = cols.take(slice(skip, None))
        self._batches = batch = (self._batches + 1) & 0xFFFFFFFF  # (the ring never holds 2**32 calls)
        for lo, hi, src in runs:
            self.kind[lo:hi] = KIND_RAW
            self.time[lo:hi] = time_ns
            self.offset[lo:hi] = cols.offsets[src]
            self.length[lo:hi] = cols.lengths[src]
            self.cpu[lo:hi] = cols.cpus[src]
            self.head[lo:hi] = cols.head[src]
            self.snapshot[lo:hi] = snapshot
            self.batch[lo:hi] = batch
            self._objs[lo:hi] = [data] * (hi - lo)
        self._next = end
        self._wake()

    def write_records(self, kind: int, time_ns: int, payloads: Sequence[Any], snapshot: int) -> None:
        """Append undecoded records of ``kind`` (e.g. KIND_L7) that the decoder turns into entries."""
        n = len(payloads)
        if not n:
            return
        skip, runs, end = self._reserve(n)
        if skip:
            payloads = payloads[skip:]
        for lo, hi, src in runs:
            self.kind[lo:hi] = kind
            self.time[lo:hi] = time_ns
            self.snapshot[lo:hi] = snapshot
            self._objs[lo:hi] = payloads[src]
        self._next = end
        self._wake()

    def _reserve(self, n: int) -> tuple[int, list[tuple[int, int, slice]], int]:
        """Slots for ``n`` new entries of one write (past ``capacity`` only the last ``capacity`` are
        kept): how many to skip, the runs of slots ``(lo, hi, slice of the kept entries)`` up to the
        end of the arrays and then from 0, and the sequence number after the last one (``_next`` once
        the slots are written). Raises ``_floor`` first: readers stop trusting the slots it gives."""
        skip = max(0, n - self.capacity)
        seq = self._next + skip
        n -= skip
        self._floor = max(self._floor, seq + n - self.capacity)
        start = seq & self._mask
        first = min(n, self._size - start)
        runs = [(start, start + first, slice(0, first))]
        if n > first:
            runs.append((0, n - first, slice(first, n)))
        return skip, runs, seq + n

    @contextlib.contextmanager
    def ingesting(self) -> Iterator[None]:
        """The writer's turn (one thread at a time): readers calling :meth:`yield_to_writer` wait.

        Hold it while a batch is taken in (copied from the source, turned into columns, written).
        """
        self._writer_idle.clear()
        try:
            yield
        finally:
            self._writer_idle.set()

    @property
    def writer_busy(self) -> bool:
        """True while the writer is inside :meth:`ingesting`."""
        return not self._writer_idle.is_set()

    def yield_to_writer(self, timeout: float | None = None) -> bool:
        """Wait while the writer takes a batch in (at most ``timeout`` s, default WRITER_TURN_MAX_S);
        False if it still is."""
        if self._writer_idle.is_set():
            return True
        return self._writer_idle.wait(WRITER_TURN_MAX_S if timeout is None else timeout)

    def _wake(self) -> None:
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
        return max(0, self._next - self.capacity, self._floor)

    def __len__(self) -> int:
        return min(self._next, self.capacity)

    @property
    def overwritten(self) -> int:
        """How many entries were dropped because the ring was full."""
        return max(0, self._next - self.capacity)

    def slots(self, start: int, stop: int) -> np.ndarray:
        """Slot indexes of sequences ``start .. stop-1`` (for reading columns over a range)."""
        return np.arange(start, stop, dtype=np.int64) & self._mask

    def read(self, seq: int) -> tuple[RingEntry | None, int]:
        """Read entry ``seq``; returns ``(entry, lost)``.

        ``lost > 0`` means the entries from ``seq`` to ``seq + lost - 1`` were overwritten: the
        caller should report them and continue at ``seq + lost``; ``entry`` is then None. When
        ``seq`` has not been written yet the result is ``(None, 0)``. A raw entry that does not
        decode reads as ``(None, 0)`` too: check ``seq < next_seq`` to tell it from the end.
        """
        got, lost = self.read_many([seq])
        if lost:
            return None, lost
        return (got[0][1] if got else None), 0

    def read_many(self, seqs: Sequence[int]) -> tuple[list[tuple[int, RingEntry]], int]:
        """Entries for ascending ``seqs``, raw ones decoded in one batch: ``([(seq, entry)], lost)``.

        Sequences not written yet and raw entries that do not decode are left out. When the
        writer has overwritten the first wanted sequences, returns ``([], lost)`` with the number
        of sequences from ``seqs[0]`` to the oldest one still readable.
        """
        if not seqs:
            return [], 0
        floor = max(self._next - self.capacity, self._floor)
        if seqs[0] < floor:
            return [], floor - seqs[0]
        mask, objs, cache = self._mask, self._objs, self._cache
        nxt = self._next
        if seqs[-1] >= nxt:
            seqs = [seq for seq in seqs if seq < nxt]
            if not seqs:
                return [], 0
        index = np.asarray(seqs, dtype=np.int64) & mask
        kinds = self.kind[index].tolist()
        out: list[tuple[int, RingEntry]] = []
        pending: list[tuple[int, int, Any]] = []  # (position in out, seq, raw item)
        todo: list[int] = []  # positions in seqs of raw entries to decode
        places: list[int] = []  # their positions in out
        for i, (seq, slot, k) in enumerate(zip(seqs, index.tolist(), kinds, strict=True)):
            if k == KIND_DECODED:
                out.append((seq, objs[slot]))
                continue
            hit = cache[slot]
            if hit is not None and hit[0] == seq:
                if hit[1] is not None:
                    out.append((seq, hit[1]))
                continue
            todo.append(i)
            places.append(len(out))
            out.append((seq, None))  # type: ignore[arg-type]
        if todo:
            slots = index[todo]
            offsets = self.offset[slots].tolist()
            ends = (self.offset[slots] + self.length[slots]).tolist()
            times = self.time[slots].tolist()
            snaps = self.snapshot[slots].tolist()
            todo_kinds = self.kind[slots].tolist()
            for j, (i, slot) in enumerate(zip(todo, slots.tolist(), strict=True)):
                k = todo_kinds[j]
                payload = objs[slot][offsets[j] : ends[j]] if k == KIND_RAW else objs[slot]
                pending.append((places[j], seqs[i], (seqs[i], times[j], k, payload, snaps[j])))
        # the writer may have lapped us while we copied: drop what is no longer ours
        floor = max(self._next - self.capacity, self._floor)
        if seqs[0] < floor:
            return [], floor - seqs[0]
        if pending:
            decoder = self.decoder
            entries = (
                decoder([item for _, _, item in pending]) if decoder is not None else [None] * len(pending)
            )
            for (pos, seq, _), entry in zip(pending, entries, strict=True):
                cache[seq & mask] = (seq, entry)  # tagged: a later reader of a newer seq ignores it
                out[pos] = (seq, entry)  # type: ignore[assignment]
            out = [item for item in out if item[1] is not None]
        return out, 0

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

    def memory_per_slot(self) -> float:
        """Bytes per slot: the columns plus the raw bytes the slots keep alive (average)."""
        live = len(self)
        if not live:
            return float(COLUMN_BYTES_PER_SLOT)
        slots = self.slots(self._next - live, self._next)
        raw = slots[self.kind[slots] == KIND_RAW]
        return COLUMN_BYTES_PER_SLOT + float(self.length[raw].sum()) / live
