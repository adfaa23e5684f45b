"""The eBPF datapath as an observer flow source: perf ring -> parser -> observer ring, in batches.

Implements the observer's ``FlowSource`` protocol (``name``, ``run(sink, stop)``). Lost perf samples
are published as LostEvents (source ``PERF_EVENT_RING_BUFFER``) with their CPU.
"""

from __future__ import annotations

import threading
import time
from typing import Any


class DatapathFlowSource:
    """Reads the datapath's events map with a MonitorReader and publishes decoded flows."""

    name = "ebpf-datapath"

    # 256 pages per CPU absorb about 40 ms of reader delay at 100k events/s; with the reader's own
    # default of 64 the pipeline benchmark (benchmarks/bench_datapath.py) lost samples at 100k/s.
    RING_PAGES = 256

    def __init__(
        self, datapath: Any, parser: Any, read_timeout: float = 0.1, pages: int = RING_PAGES
    ) -> None:
        self._datapath = datapath
        self._parser = parser
        self._timeout = read_timeout
        self._pages = pages
        self.published = 0
        self.lost = 0

    def run(self, sink: Any, stop: threading.Event) -> None:
        reader = self._datapath.open_monitor(pages=self._pages)
        try:
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
