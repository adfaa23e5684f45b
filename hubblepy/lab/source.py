"""The lab node's observer flow sources (the observer's ``FlowSource`` protocol: ``name``, ``run``).

* :class:`DatapathFlowSource`: the eBPF datapath's perf ring -> parser -> observer ring, in batches;
  lost perf samples are published as LostEvents (source ``PERF_EVENT_RING_BUFFER``) with their CPU;
* :class:`AccessLogSource`: the L7 proxies' access-log socket -> a record decoder -> observer ring.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hubblepy.monitor.options import DEFAULT_NUM_PAGES
from hubblepy.proxy.accesslog import RecordAssembler, whole_record

if TYPE_CHECKING:
    from hubblepy.observer.sources import EventSink


class DatapathFlowSource:
    """Reads the datapath's events map with a MonitorReader and publishes its flows.

    With ``lazy`` (the default) and an observer sink, the samples go into the ring raw, with their
    header columns, and are decoded when a client reads them; otherwise every sample is decoded
    into a flow dict here (``Parser.decode_batch``) before it is published.
    """

    name = "ebpf-datapath"

    # 256 pages per CPU absorb about 40 ms of reader delay at 100k events/s; with the reader's own
    # default of 64 the pipeline benchmark (benchmarks/bench_datapath.py) lost samples at 100k/s.
    RING_PAGES = 256
    # Raw samples cost the reader ~0.25 µs each, so it keeps up at 1M events/s; what loses samples then
    # is the time it is not scheduled: 1024 pages (4 MiB per CPU) absorb ~20 ms at that rate. Waking
    # the reader every 4096 samples rather than 256 keeps its batches large (numpy per batch, not per
    # sample): at 1M events/s its share of a core went from ~60% to ~30% (benchmarks/bench_pipeline.py).
    # Below that rate per CPU, the read timeout flushes what waits, as it did already at low rates.
    # The lab node passes its --monitor-num-pages (hubblepy/monitor/options.py: 4096 by default).
    LAZY_RING_PAGES = DEFAULT_NUM_PAGES
    LAZY_WAKEUP_EVENTS = 4096
    # a wakeup comes when at most this share of a CPU's ring is full (of 256-byte samples, about
    # the largest the datapath sends); smaller rings get a smaller wakeup count
    WAKEUP_RING_SHARE = 4
    SAMPLE_BYTES = 256

    @classmethod
    def lazy_wakeup_events(cls, pages: int) -> int:
        """How many samples the kernel collects before waking the reader of ``pages`` pages per CPU."""
        fit = pages * mmap.PAGESIZE // (cls.WAKEUP_RING_SHARE * cls.SAMPLE_BYTES)
        return max(1, min(cls.LAZY_WAKEUP_EVENTS, fit))

    def __init__(
        self,
        datapath: Any,
        parser: Any,
        read_timeout: float = 0.1,
        pages: int | None = None,
        lazy: bool = True,
    ) -> None:
        self._datapath = datapath
        self._parser = parser
        self._timeout = read_timeout
        self._pages = pages if pages is not None else (self.LAZY_RING_PAGES if lazy else self.RING_PAGES)
        self.lazy = lazy
        self.published = 0
        self.lost = 0

    def run(self, sink: EventSink, stop: threading.Event) -> None:
        lazy = self.lazy and hasattr(sink, "publish_records")
        options = {"pages": self._pages}
        if lazy:
            options["wakeup_events"] = self.lazy_wakeup_events(self._pages)
        reader = self._datapath.open_monitor(**options)
        try:
            if lazy and hasattr(reader, "read_records"):
                self._run_lazy(sink, reader, stop)
                return
            while not stop.is_set():
                batch = reader.read(self._timeout)
                if batch.samples:
                    now = time.time_ns()
                    flows = self._parser.decode_batch(batch.samples, now)
                    if flows:
                        sink.publish_flows([(now, f) for f in flows])
                        self.published += len(flows)
                for cpu, count in batch.lost:
                    self.lost += count
                    sink.publish_lost("PERF_EVENT_RING_BUFFER", count, cpu)
        finally:
            reader.close()

    def _run_lazy(self, sink: Any, reader: Any, stop: threading.Event) -> None:
        """Raw samples into the observer's ring, decoded when read (Observer.publish_records).

        After the wait for data, the batch is copied and written during the ring's writer turn
        (``sink.ingesting()``): the node's readers pause decoding meanwhile, so a busy client does
        not slow the reader down until the kernel's perf ring overflows."""
        sink.use_parser(self._parser)
        turn = getattr(sink, "ingesting", None)
        while not stop.is_set():
            reader.wait(self._timeout)
            with turn() if turn is not None else contextlib.nullcontext():
                batch = reader.read_records(0)
                if len(batch.offsets):
                    self.published += sink.publish_records(batch, time.time_ns())
                for cpu, count in batch.lost:
                    self.lost += count
                    sink.publish_lost("PERF_EVENT_RING_BUFFER", count, cpu)


Decoder = Callable[[dict[str, Any], int], "dict[str, Any] | None"]
BatchDecoder = Callable[[list[dict[str, Any]], int], "list[dict[str, Any]]"]


class AccessLogSource:
    """The L7 proxies' access log as a flow source: newline-delimited JSON records on a unix socket.

    Each proxy connects to ``path`` (a stream socket, mode 0600, made by :meth:`run`) and writes one
    record per line (Cilium's ``accesslog.LogRecord`` keys), whole or compact (a template's number,
    timestamp and headers: :class:`~hubblepy.proxy.accesslog.RecordAssembler`). ``decode(record, now_ns)`` turns a record
    into a flow dict (the parser's L7 decoder) or None to skip it; flows are published in batches.
    ``decode_batch(records, now_ns)``, when given, decodes a batch at once instead (the flows of the
    records it does not skip, in order): the same flows for less work per record.
    A line that is not a record is counted in ``malformed`` and skipped; the proxies' connections
    come and go (a restarted proxy reconnects). With ``seven`` (the ``SevenParser`` behind the
    decoders) and an observer sink, records go into the ring undecoded (``Observer.publish_l7``:
    correlated now, turned into flows when read) and ``skipped`` stays 0.
    """

    name = "proxy-access-log"
    MAX_LINE = 1 << 20
    # After a small batch the reader lets the next one gather for up to this long: publishing costs
    # per batch as well as per record (metrics, ring columns), and a busy proxy writes a few records
    # per loop pass. Flows reach clients at most this much later.
    GATHER_S = 0.010
    SMALL_BATCH = 256

    def __init__(
        self,
        path: Path,
        decode: Decoder,
        poll_timeout: float = 0.1,
        decode_batch: BatchDecoder | None = None,
        seven: Any = None,
    ) -> None:
        self.path = path
        self._seven = seven
        self._decode = decode
        self._decode_batch = decode_batch
        self._timeout = poll_timeout
        self.published = 0
        self.malformed = 0
        self.skipped = 0

    def run(self, sink: EventSink, stop: threading.Event) -> None:
        self.path.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # made under another name and renamed once it listens with its mode set: a proxy that
        # finds the path can connect (between bind and listen it would be refused)
        making = self.path.with_name(self.path.name + "~")
        making.unlink(missing_ok=True)
        listener.bind(str(making))
        os.chmod(making, 0o600)
        listener.listen(16)
        os.replace(making, self.path)
        listener.setblocking(False)
        sel = selectors.DefaultSelector()
        sel.register(listener, selectors.EVENT_READ, None)
        pending: dict[socket.socket, bytes] = {}
        assemblers: dict[socket.socket, RecordAssembler] = {}
        try:
            while not stop.is_set():
                lines: list[tuple[RecordAssembler, list[bytes]]] = []
                for key, _ in sel.select(self._timeout):
                    conn = key.fileobj
                    assert isinstance(conn, socket.socket)
                    if conn is listener:
                        client, _ = listener.accept()
                        client.setblocking(False)
                        sel.register(client, selectors.EVENT_READ, None)
                        pending[client] = b""
                        assemblers[client] = RecordAssembler()
                        continue
                    try:
                        chunk = conn.recv(65536)
                    except OSError:  # a proxy that died mid-line: what it sent whole is kept
                        chunk = b""
                    if not chunk:
                        sel.unregister(conn)
                        conn.close()
                        rest = pending.pop(conn)
                        assembler = assemblers.pop(conn)
                        if rest.strip():
                            lines.append((assembler, [rest]))
                        continue
                    *complete, rest = (pending[conn] + chunk).split(b"\n")
                    if len(rest) > self.MAX_LINE:
                        self.malformed += 1
                        rest = b""
                    pending[conn] = rest
                    lines.append((assemblers[conn], complete))
                count = self._publish(sink, lines)
                if 0 < count < self.SMALL_BATCH:
                    stop.wait(self.GATHER_S)
        finally:
            for key in list(sel.get_map().values()):
                key.fileobj.close()  # type: ignore[union-attr]
            sel.close()
            self.path.unlink(missing_ok=True)

    def _publish(self, sink: EventSink, batches: list[tuple[RecordAssembler, list[bytes]]]) -> int:
        """Publishes the batch's records; returns how many lines it held (a row batch counts its rows)."""
        now = time.time_ns()
        lazy = self._seven is not None and hasattr(sink, "publish_l7")
        count = sum(len(lines) for _, lines in batches)  # lines, and the rows of row batches
        flows = []
        records: list[Any] = []
        keys: list[Any] = []
        correlations: list[Any] = []
        for assembler, lines in batches:
            assemble = assembler.assemble
            for line in lines:
                if not line or line.isspace():
                    continue
                got, got_keys, got_correlations = assemble(line)
                if assembler.bad:  # not a record, not a definition
                    self.malformed += assembler.bad
                    assembler.bad = 0
                if len(got) > 1:
                    count += len(got) - 1
                if lazy:
                    records += got
                    keys += got_keys
                    correlations += got_correlations
                    continue
                for record in got:
                    whole = whole_record(record)
                    if self._decode_batch is not None:
                        records.append(whole)
                        continue
                    flow = self._decode(whole, now)
                    if flow is None:
                        self.skipped += 1
                    else:
                        flows.append((now, flow))
        if records and lazy:
            self.published += sink.publish_l7(records, now, self._seven, keys, correlations)  # type: ignore[attr-defined]
            return count
        if records:
            decoded = self._decode_batch(records, now)  # type: ignore[misc]
            self.skipped += len(records) - len(decoded)
            flows = [(now, flow) for flow in decoded]
        if flows:
            sink.publish_flows(flows)
            self.published += len(flows)
        return count
