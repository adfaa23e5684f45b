"""MonitorReader: batch reader of a BPF perf event array (ours or a Cilium node's ``cilium_events``).

It opens one BPF-output perf event per online CPU, mmaps each ring, stores the fds in the map, and
reads the rings directly from Python: wait with epoll (the kernel wakes us every ``wakeup_events``
samples, a short timeout flushes the rest), copy everything between tail and head in one slice,
split it into records, advance the tail. No per-event callback, no per-event C-to-Python crossing.

Each batch holds raw samples ``(cpu, bytes)`` (the event header, the packet bytes, and up to 7 perf
padding bytes: use the header's ``len_cap``) and lost-sample records ``(cpu, count)``. The reader
counts both (``received``, ``lost``); lost samples are never dropped silently.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import select
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

from hubblepy.monitor import perf

_HEAD = struct.Struct("<Q")
# perf_event_header (type, misc, size) + the u32 raw size of a PERF_RECORD_SAMPLE; for other records
# the fourth field is garbage and ignored. Every record is at least 16 bytes, so one unpack suffices.
_REC_HDR = struct.Struct("<IHHI")
# with PERF_SAMPLE_TIME: header, u64 time, u32 raw size
_REC_HDR_TIME = struct.Struct("<IHHQI")
_U64 = struct.Struct("<Q")

DEFAULT_PAGES = 64
DEFAULT_WAKEUP_EVENTS = 32
DEFAULT_TIMEOUT = 0.02


def _by_time(item: tuple[int, int, bytes]) -> int:
    return item[0]


class Batch(NamedTuple):
    samples: list[tuple[int, bytes]]
    lost: list[tuple[int, int]]


@dataclass(slots=True)
class _Ring:
    cpu: int
    fd: int
    mm: mmap.mmap
    offset: int
    size: int
    tail: int


class MonitorReader:
    """Reads a perf event array map in batches. Use as an iterator or call :meth:`read`.

    ``pages`` (per CPU, a power of two) sizes each ring; ``wakeup_events`` is how many samples the
    kernel collects before waking the reader; ``timeout`` (seconds) bounds how long a partial batch
    waits. ``ordered`` (default) has the kernel stamp each sample and sorts every batch by those
    stamps, so events of different CPUs come in the order they happened (a SYN before its SYN-ACK);
    without it a batch holds CPU 0's samples, then CPU 1's, ..., which reads about 20 % faster.
    """

    def __init__(
        self,
        map_fd: int,
        *,
        pages: int = DEFAULT_PAGES,
        wakeup_events: int = DEFAULT_WAKEUP_EVENTS,
        timeout: float = DEFAULT_TIMEOUT,
        cpus: list[int] | None = None,
        ordered: bool = True,
    ) -> None:
        if pages <= 0 or pages & (pages - 1):
            raise ValueError(f"pages must be a power of two, not {pages}")
        self.map_fd = map_fd
        self.timeout = timeout
        self.ordered = ordered
        self.received = 0
        self.lost = 0
        self._rings: list[_Ring] = []
        self._stopped = threading.Event()
        self._closed = False
        self._owned_map_fd = False
        self._epoll = select.epoll()
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._epoll.register(self._wake_fd, select.EPOLLIN)
        page = mmap.PAGESIZE
        try:
            for cpu in cpus if cpus is not None else perf.online_cpus():
                fd = perf.open_bpf_output_event(cpu, max(1, wakeup_events), with_time=ordered)
                try:
                    mm = mmap.mmap(fd, (pages + 1) * page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
                except OSError:
                    os.close(fd)
                    raise
                offset = _U64.unpack_from(mm, perf.MMAP_DATA_OFFSET)[0] or page
                size = _U64.unpack_from(mm, perf.MMAP_DATA_SIZE)[0] or pages * page
                ring = _Ring(cpu, fd, mm, offset, size, _U64.unpack_from(mm, perf.MMAP_DATA_TAIL)[0])
                self._rings.append(ring)
                perf.perf_ioctl(fd, perf.PERF_EVENT_IOC_ENABLE)
                perf.map_set_u32(map_fd, cpu, fd)
                self._epoll.register(fd, select.EPOLLIN)
        except BaseException:
            self.close()
            raise

    @classmethod
    def from_pinned(cls, path: str, **kwargs: object) -> MonitorReader:
        """A reader on a pinned perf event array, e.g. ``/sys/fs/bpf/tc/globals/cilium_events``.

        The reader owns the map fd it opened and closes it with the reader.
        """
        fd = perf.obj_get(path)
        try:
            reader = cls(fd, **kwargs)  # type: ignore[arg-type]
        except BaseException:
            os.close(fd)
            raise
        reader._owned_map_fd = True
        return reader

    # -- reading ----------------------------------------------------------------------------------
    def read(self, timeout: float | None = None) -> Batch:
        """Waits up to ``timeout`` (default: the reader's) for data, then drains every ring once."""
        samples: list[tuple[int, bytes]] = []
        lost: list[tuple[int, int]] = []
        if self._closed:
            return Batch(samples, lost)
        self._epoll.poll(self.timeout if timeout is None else timeout)
        if self.ordered:
            stamped: list[tuple[int, int, bytes]] = []
            for ring in self._rings:
                self._drain_stamped(ring, stamped, lost)
            if stamped:
                stamped.sort(key=_by_time)  # each ring is already in order: timsort merges the runs
                samples = [(cpu, raw) for _, cpu, raw in stamped]
        else:
            for ring in self._rings:
                self._drain(ring, samples, lost)
        self.received += len(samples)
        for _, n in lost:
            self.lost += n
        return Batch(samples, lost)

    def drain(self) -> Batch:
        """Reads whatever is in the rings now, without waiting."""
        return self.read(0)

    def __iter__(self) -> Iterator[Batch]:
        """Yields non-empty batches until :meth:`stop` is called."""
        while not self._stopped.is_set():
            batch = self.read()
            if batch.samples or batch.lost:
                yield batch

    @staticmethod
    def _drain(ring: _Ring, samples: list[tuple[int, bytes]], lost: list[tuple[int, int]]) -> None:
        """Splits everything new in one ring into samples (cpu, bytes) and lost counts."""
        buf, head, n = MonitorReader._take(ring)
        if not n:
            return
        cpu = ring.cpu
        append = samples.append
        rec_hdr = _REC_HDR.unpack_from
        off = 0
        while off < n:
            kind, _misc, rec_size, raw = rec_hdr(buf, off)
            if rec_size == 0:
                break  # cannot happen with a sane kernel; never loop forever
            if kind == perf.PERF_RECORD_SAMPLE:
                append((cpu, buf[off + 12 : off + 12 + raw]))
            elif kind == perf.PERF_RECORD_LOST:
                lost.append((cpu, _U64.unpack_from(buf, off + 16)[0]))
            off += rec_size
        MonitorReader._release(ring, head)

    @staticmethod
    def _drain_stamped(ring: _Ring, out: list[tuple[int, int, bytes]], lost: list[tuple[int, int]]) -> None:
        """Like _drain, for rings whose samples carry PERF_SAMPLE_TIME: appends (time, cpu, bytes)."""
        buf, head, n = MonitorReader._take(ring)
        if not n:
            return
        cpu = ring.cpu
        append = out.append
        rec_hdr = _REC_HDR_TIME.unpack_from
        off = 0
        while off < n:
            kind, _misc, rec_size, stamp, raw = rec_hdr(buf, off)
            if rec_size == 0:
                break
            if kind == perf.PERF_RECORD_SAMPLE:
                append((stamp, cpu, buf[off + 20 : off + 20 + raw]))
            elif kind == perf.PERF_RECORD_LOST:
                lost.append((cpu, _U64.unpack_from(buf, off + 16)[0]))
            off += rec_size
        MonitorReader._release(ring, head)

    @staticmethod
    def _take(ring: _Ring) -> tuple[bytes, int, int]:
        """Copies everything between the ring's tail and head: (bytes, head, length)."""
        mm = ring.mm
        head = _HEAD.unpack_from(mm, perf.MMAP_DATA_HEAD)[0]
        n = head - ring.tail
        if n <= 0:
            return b"", head, 0
        size = ring.size
        base = ring.offset
        start = ring.tail % size
        end = start + n
        if end <= size:
            return mm[base + start : base + end], head, n
        return mm[base + start : base + size] + mm[base : base + end - size], head, n

    @staticmethod
    def _release(ring: _Ring, head: int) -> None:
        """Hands the consumed space back to the kernel."""
        _HEAD.pack_into(ring.mm, perf.MMAP_DATA_TAIL, head)
        ring.tail = head

    # -- lifecycle --------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ends iteration (from any thread); wakes a reader blocked in epoll."""
        self._stopped.set()
        with contextlib.suppress(OSError):
            os.eventfd_write(self._wake_fd, 1)

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def close(self) -> None:
        """Removes our fds from the map and releases rings, fds and epoll. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._stopped.set()
        for ring in self._rings:
            perf.map_delete_u32(self.map_fd, ring.cpu)
            with contextlib.suppress(OSError):
                perf.perf_ioctl(ring.fd, perf.PERF_EVENT_IOC_DISABLE)
            ring.mm.close()
            os.close(ring.fd)
        self._rings.clear()
        self._epoll.close()
        os.close(self._wake_fd)
        if self._owned_map_fd:
            os.close(self.map_fd)

    def __enter__(self) -> MonitorReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
