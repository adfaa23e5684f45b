"""The exporter: settings from the agent's flags, the writer thread, its counters."""

from __future__ import annotations

import contextlib
import errno
import json
import queue
import sys
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily, Metric

from hubblepy.api.observer import observer_pb2
from hubblepy.export.rotate import RotatingFile
from hubblepy.filters import FilterError, compile_flow_filters
from hubblepy.observer.service import ResponseEncoder

QUEUE_BATCHES = 1024  # batches waiting for the writer; beyond that flows are dropped and counted
_STOP = object()


class ExportError(ValueError):
    """Invalid exporter settings (one line)."""


@dataclass
class ExportSettings:
    path: str
    max_size_mb: int = 10
    max_backups: int = 5
    compress: bool = False
    allow: list[dict[str, Any]] = field(default_factory=list)
    deny: list[dict[str, Any]] = field(default_factory=list)
    fieldmask: list[str] = field(default_factory=list)


def _filters(flag: str, raw: str) -> list[dict[str, Any]]:
    """JSON FlowFilters, back to back or separated by commas/spaces (cilium-config's spelling)."""
    from hubblepy.cli.raw_filters import RawFilterError, decode_flow_filters

    decoder = json.JSONDecoder()
    filters: list[dict[str, Any]] = []
    pos, text = 0, raw.strip()
    while pos < len(text):
        if text[pos] in ", \t\n":
            pos += 1
            continue
        try:
            _, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise ExportError(f"--{flag}: invalid JSON FlowFilter {raw!r}: {exc.msg}") from None
        try:
            filters.extend(decode_flow_filters(text[pos:end]))
        except RawFilterError as exc:
            raise ExportError(f"--{flag}: {exc}") from None
        pos = end
    return filters


def exporter_from_args(args: Any, node_name: str = "") -> FlowExporter | None:
    """A FlowExporter from the agent's ``--export-*`` flags, or None when the path is empty."""
    if not args.export_file_path:
        return None
    if args.export_file_max_size_mb < 1:
        raise ExportError("--export-file-max-size-mb must be at least 1")
    if args.export_file_max_backups < 0:
        raise ExportError("--export-file-max-backups must not be negative")
    settings = ExportSettings(
        path=args.export_file_path,
        max_size_mb=args.export_file_max_size_mb,
        max_backups=args.export_file_max_backups,
        compress=args.export_file_compress,
        allow=_filters("export-allowlist", args.export_allowlist),
        deny=_filters("export-denylist", args.export_denylist),
        fieldmask=[p for p in args.export_fieldmask.replace(",", " ").split() if p],
    )
    return FlowExporter(settings)


class FlowExporter:
    """Writes the node's flows to a rotated file from its own thread."""

    def __init__(self, settings: ExportSettings, max_bytes: int | None = None) -> None:
        self.settings = settings
        try:
            self.predicate = (
                compile_flow_filters(settings.allow, settings.deny)
                if settings.allow or settings.deny
                else None
            )
        except FilterError as exc:
            raise ExportError(f"export filters: {exc}") from None
        self.encoder = ResponseEncoder(observer_pb2.GetFlowsResponse, settings.fieldmask or None)
        self.max_bytes = max_bytes if max_bytes is not None else settings.max_size_mb * 1024 * 1024
        self.exported = 0
        self.filtered = 0
        self.dropped: dict[str, int] = {"write_error": 0, "queue_full": 0}
        self.write_errors = 0
        self.last_error = ""
        self._file: RotatingFile | None = None
        self._queue: queue.Queue = queue.Queue(QUEUE_BATCHES)
        self._thread: threading.Thread | None = None
        self._failing = False

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self, observer: Any) -> None:
        """Open the file (errors here are start-up errors) and hook into ``observer``."""
        path = self.settings.path
        try:
            if path == "stdout":
                self._file = RotatingFile("/dev/stdout", self.max_bytes, 0, False)
            else:
                self._file = RotatingFile(
                    path, self.max_bytes, self.settings.max_backups, self.settings.compress
                )
        except OSError as exc:
            raise ExportError(f"cannot open export file {path}: {exc.strerror or exc}") from None
        self._thread = threading.Thread(target=self._run, name="flow-exporter", daemon=True)
        self._thread.start()
        observer.add_flow_listener(self.on_entries)

    def on_entries(self, entries: Sequence[Any]) -> None:
        """Observer flow listener: queue the batch, never block the publisher."""
        try:
            self._queue.put_nowait(entries)
        except queue.Full:
            self.dropped["queue_full"] += len(entries)

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until every queued batch is written (tests, shutdown)."""
        done = threading.Event()
        with contextlib.suppress(queue.Full):
            self._queue.put(done, timeout=timeout)
            done.wait(timeout)

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout=5)
            self._thread = None
        if self._file is not None:
            self._file.close()

    # -- writer thread ----------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if isinstance(item, threading.Event):
                item.set()
                continue
            self._write(item)

    def _write(self, entries: Sequence[Any]) -> None:
        assert self._file is not None
        predicate = self.predicate
        lines = []
        for entry in entries:
            if predicate is not None and not predicate(entry.response):
                self.filtered += 1
                continue
            lines.append(self.encoder.encode_json(entry))
        if not lines:
            return
        before = self._file.lines_written
        try:
            self._file.write_lines(lines)
        except OSError as exc:
            written = self._file.lines_written - before
            self.exported += written
            self.dropped["write_error"] += len(lines) - written
            self.write_errors += 1
            self.last_error = exc.strerror or str(exc)
            if not self._failing:  # report once per failure episode
                self._failing = True
                what = "disk full" if exc.errno == errno.ENOSPC else self.last_error
                sys.stderr.write(
                    f"hubble agent: export to {self.settings.path} failed ({what}); flows are dropped "
                    "and counted until writes succeed again\n"
                )
                sys.stderr.flush()
            return
        if self._failing:
            self._failing = False
            sys.stderr.write(f"hubble agent: export to {self.settings.path} resumed\n")
            sys.stderr.flush()
        self.exported += len(lines)

    # -- metrics --------------------------------------------------------------------------------
    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        """Prometheus collector (registered when the agent also serves metrics)."""
        exported = CounterMetricFamily("hubble_exporter_flows_exported", "Flows written by the exporter")
        exported.add_metric([], self.exported)
        yield exported
        dropped = CounterMetricFamily(
            "hubble_exporter_flows_dropped", "Flows the exporter could not write", labels=["reason"]
        )
        for reason, n in sorted(self.dropped.items()):
            dropped.add_metric([reason], n)
        yield dropped
        errors = CounterMetricFamily("hubble_exporter_write_errors", "Failed writes of the export file")
        errors.add_metric([], self.write_errors)
        yield errors
        rotations = CounterMetricFamily("hubble_exporter_rotations", "Rotations of the export file")
        rotations.add_metric([], self._file.rotations if self._file is not None else 0)
        yield rotations
