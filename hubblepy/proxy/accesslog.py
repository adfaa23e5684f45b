"""Access-log records (Cilium's ``accesslog.LogRecord`` JSON keys) and their transport to the node.

Transport: newline-delimited JSON (orjson) over a unix stream socket. The node listens
(:class:`AccessLogReader`); the proxy connects (:class:`AccessLogWriter`), batches records (up to 256
or 10 ms) into one write, reconnects when the node restarts the socket, and counts the records
it had to drop (node not listening, or more than ``max_buffer`` bytes waiting).

A line is one of:

- a whole record, a JSON object; the node correlates it (below) itself;
- ``=LATENCY TRACE {record}``: a whole record with its correlation worked out by the proxy;
- ``["T", id, {record}]``: defines template ``id`` on this connection (:class:`LogTemplate`: a record
  with ``"Timestamp": ""`` and ``"Headers": {}``, every other field fixed, e.g. one connection's
  requests under one verdict);
- ``["H", id, {headers}]``: defines header set ``id`` (an ``HTTP.Headers`` object, see
  :func:`header_set`);
- ``[[ID, NS, LATENCY, "TRACE", HEADERS, "REQUEST-ID" or null], ...]``: a batch of rows, one record
  each: template ``ID``, its time in Unix nanoseconds, its correlation, header set ``HEADERS`` and
  the value of the set's ``X-Request-Id`` hole. The proxy appends a row per record and writes a
  batch with one ``orjson.dumps``; the node reads it with one ``orjson.loads``;
- ``[id, "timestamp", {headers}]``: one record of a template that the node correlates itself.

Correlation is what Hubble's L7 parser works out from the records before a record (the
``X-Request-Id`` table: a response's latency and the trace ID of its request's ``traceparent``).
The HTTP proxy keeps that table for its own records (the parser's
:class:`~hubblepy.parser.seven.Correlator`, so the same rules), so the
node neither parses their headers nor builds their dicts when they arrive: ``LATENCY`` is in
nanoseconds and ``TRACE`` is the trace ID (``-`` or "" for none). :class:`RecordAssembler` (one per
connection) turns every kind back into records (:class:`LazyRecord` for rows, made whole when
read); the writer defines templates and header sets again after anything that may have lost their
definitions (a new connection, dropped lines). When the node reads
slower than the proxy writes (more than ``high_water`` bytes waiting), ``on_congestion(True)`` lets the
proxy slow its clients down until the backlog is below ``low_water`` (``on_congestion(False)``); the
proxy bounds how long it waits, so a stuck node never blocks requests for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

TYPE_REQUEST = "Request"
TYPE_RESPONSE = "Response"
VERDICT_FORWARDED = "Forwarded"
VERDICT_DENIED = "Denied"
VERDICT_ERROR = "Error"
INGRESS = "Ingress"
EGRESS = "Egress"


_last_second: tuple[int, str] = (-1, "")  # (the second, its formatted text), replaced whole


def timestamp(ns: int) -> str:
    """RFC 3339 with nanoseconds, UTC (Go's time.RFC3339Nano without trailing zeros)."""
    global _last_second
    seconds, frac = divmod(ns, 1_000_000_000)
    last = _last_second  # one read: other threads may replace it meanwhile
    if seconds == last[0]:
        text = last[1]
    else:
        text = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _last_second = (seconds, text)
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return text + "Z"


_CANONICAL: dict[str | bytes, str] = {}


def canonical_header(name: str | bytes) -> str:
    """Go's textproto canonical form: ``x-request-id`` -> ``X-Request-Id`` (cached)."""
    found = _CANONICAL.get(name)
    if found is None:
        text = name.decode("latin-1") if isinstance(name, bytes) else name
        found = "-".join(part[:1].upper() + part[1:].lower() for part in text.split("-"))
        if len(_CANONICAL) < 4096:
            _CANONICAL[name] = found
    return found


def header_map(headers: list[tuple[str, str]] | list[tuple[bytes, bytes]]) -> dict[str, list[str]]:
    """Headers as Go's ``http.Header`` JSON: canonical names, every value in order."""
    out: dict[str, list[str]] = {}
    canonical = _CANONICAL
    for name, value in headers:
        key = canonical.get(name) or canonical_header(name)
        text = value.decode("latin-1") if type(value) is bytes else value
        found = out.get(key)
        if found is None:
            out[key] = [text]  # type: ignore[list-item]
        else:
            found.append(text)  # type: ignore[arg-type]
    return out


_REQUEST_ID = "X-Request-Id"
# header sets (see header_set): by the headers before the proxy's own X-Request-Id, added last ...
_TRAILING_SETS: dict[tuple, tuple[LogTemplate, bool]] = {}
# ... and by the whole header list, with the X-Request-Id value that is the hole blanked out
_HEADER_SETS: dict[tuple, tuple[LogTemplate, bool]] = {}


def header_set(
    headers: list[tuple[bytes, bytes]], added: str | None = None
) -> tuple[LogTemplate, str | None]:
    """The header set a record's ``headers`` belong to and the value of its hole, for rows.

    A set is ``header_map`` of the headers with the value of their one ``X-Request-Id`` left empty
    (different in every request and response: the row's hole) or, without exactly one, of all
    headers (the hole is then None). ``added``: the value of an X-Request-Id that follows ``headers``
    (the proxy's own), given apart so that the list need not be copied. Sets are cached: a
    connection's requests repeat theirs."""
    if added is None and headers and headers[-1][0] == b"X-Request-Id":  # the proxy's own, added last
        added = headers[-1][1].decode("latin-1")
        headers = headers[:-1]
    if added is not None:
        trailing = trailing_set(headers)
        if trailing is not None:
            return trailing, added
        headers = [*headers, (b"X-Request-Id", added.encode("latin-1"))]
    positions = [
        i for i, (name, _) in enumerate(headers) if len(name) == 12 and name.lower() == b"x-request-id"
    ]
    if len(positions) == 1:
        at = positions[0]
        blanked = list(headers)
        blanked[at] = (headers[at][0], b"")
        return _cached_set(_HEADER_SETS, tuple(blanked), blanked)[0], headers[at][1].decode("latin-1")
    return _cached_set(_HEADER_SETS, tuple(headers), headers)[0], None


def trailing_set(headers: list[tuple[bytes, bytes]]) -> LogTemplate | None:
    """The set of ``headers`` followed by an X-Request-Id whose value is the hole; None when
    ``headers`` have an X-Request-Id of their own (then :func:`header_set` finds the set)."""
    key = tuple(headers)
    found = _TRAILING_SETS.get(key)
    if found is None:
        found = _cached_set(_TRAILING_SETS, key, [*headers, (b"X-Request-Id", b"")])
    return found[0] if found[1] else None


class HeaderSetMemo:
    """One connection's last header list (before the X-Request-Id that follows it) and its
    :func:`trailing_set`: a connection's requests, and its responses, usually repeat their
    headers, and comparing two short lists costs less than hashing one."""

    __slots__ = ("headers", "found")

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] | None = None
        self.found: LogTemplate | None = None

    def header_set(
        self, headers: list[tuple[bytes, bytes]], added: str | None = None
    ) -> tuple[LogTemplate, str | None]:
        """``header_set(headers, added)``."""
        if added is None:
            if not headers or headers[-1][0] != b"X-Request-Id":
                return header_set(headers)
            added = headers[-1][1].decode("latin-1")  # the proxy's own, added last
            headers = headers[:-1]
        if headers != self.headers:
            self.headers = list(headers)
            self.found = trailing_set(headers)
        if self.found is not None:
            return self.found, added
        return header_set(headers, added)


def _cached_set(cache: dict, key: tuple, headers: list[tuple[bytes, bytes]]) -> tuple[LogTemplate, bool]:
    """The set of ``headers`` from ``cache`` (made and cached when missing) and whether its
    X-Request-Id is a hole: one empty value, [""]."""
    found = cache.get(key)
    if found is None:
        if len(cache) >= 4096:
            cache.clear()
        mapped = header_map(headers)
        found = cache[key] = (LogTemplate(orjson.dumps(mapped)), mapped.get(_REQUEST_ID) == [""])
    return found


_URLS: dict[tuple[str, str], dict[str, Any]] = {}


def url_object(host: str, path: str) -> dict[str, Any]:
    """A Go ``url.URL`` as encoding/json writes it (http scheme, host, path, query); cached, do not modify."""
    found = _URLS.get((host, path))
    if found is None:
        found = _url_object(host, path)
        if len(_URLS) > 8192:
            _URLS.clear()
        _URLS[(host, path)] = found
    return found


def _url_object(host: str, path: str) -> dict[str, Any]:
    from urllib.parse import unquote

    raw_path, _, query = path.partition("?")
    decoded = unquote(raw_path)
    return {
        "Scheme": "http",
        "Opaque": "",
        "User": None,
        "Host": host,
        "Path": decoded,
        "RawPath": raw_path if decoded != raw_path else "",
        "OmitHost": False,
        "ForceQuery": False,
        "RawQuery": query,
        "Fragment": "",
        "RawFragment": "",
    }


class LogTemplate:
    """Something rows refer to by number, defined once per connection (see
    :meth:`AccessLogWriter.emit_row`): a record with two holes, ``Timestamp`` and ``HTTP.Headers``,
    or a header set."""

    __slots__ = ("definition", "number", "generation")

    def __init__(self, definition: bytes) -> None:
        self.definition = definition  # the record's JSON with "Timestamp": "" and "Headers": {}
        self.number = 0
        self.generation = -1  # the writer generation it was last defined in


class AccessLogWriter:
    """The proxy side: connects to the node's socket and sends records, never blocking."""

    def __init__(
        self,
        path: str,
        max_buffer: int = 64 << 20,
        retry: float = 0.5,
        batch: int = 256,
        delay: float = 0.010,
        high_water: int = 8 << 20,
        low_water: int = 2 << 20,
    ) -> None:
        self.path = path
        self.batch = batch
        self.delay = delay
        self.max_buffer = max_buffer
        self.retry = retry
        self.sent = 0
        self.lost = 0
        self._pending: list[bytes] = []
        self._rows: list[tuple] = []  # rows after the last line of _pending, written as one line
        self._pending_records = 0  # records in _pending and _rows (definitions are not records)
        # bumped whenever lines may have been lost (a connection ended, a batch dropped): templates
        # defined in an older generation are defined again before their next record
        self.generation = 0
        self._next_template = 0
        self._transport: asyncio.Transport | None = None
        self._connecting = False
        self._next_try = 0.0
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.high_water = high_water
        self.low_water = low_water
        self.on_congestion: Callable[[bool], None] | None = None

    def _congestion(self, congested: bool) -> None:
        if self.on_congestion is not None:
            self.on_congestion(congested)

    def emit(self, record: dict[str, Any]) -> None:
        self.emit_bytes(orjson.dumps(record))

    def emit_bytes(self, record: bytes) -> None:
        """One record already serialised as one line of JSON (no newline)."""
        if self._rows:
            self._close_rows()
        pending = self._pending
        pending.append(record)
        self._pending_records += 1
        self._added()

    def _added(self) -> None:
        if self._pending_records >= self.batch:
            self._flush()
        elif not self._scheduled:
            self._scheduled = True
            if self._loop is None:
                self._loop = asyncio.get_running_loop()
            # a few milliseconds of batching: one write (and one wake-up of the node) per batch
            self._loop.call_later(self.delay, self._flush)

    def emit_correlated(self, record: bytes, latency: int, trace_id: str) -> None:
        """A whole record (one line of JSON) and its correlation (see :class:`~hubblepy.parser.seven.Correlator`)."""
        self.emit_bytes(b"=%d %b %b" % (latency, trace_id.encode() or b"-", record))

    def emit_row(
        self,
        template: LogTemplate,
        ns: int,
        latency: int,
        trace_id: str,
        headers: LogTemplate,
        request_id: str | None,
    ) -> None:
        """One record of ``template``: its time (Unix ns), its correlation (see :class:`~hubblepy.parser.seven.Correlator`),
        its header set and the value of the set's X-Request-Id hole (see :func:`header_set`)."""
        generation = self.generation
        if template.generation != generation or headers.generation != generation:
            self._define(template, headers)
        self._rows.append((template.number, ns, latency, trace_id, headers.number, request_id))
        self._pending_records += 1
        if self._scheduled and self._pending_records < self.batch:
            return  # the common case, without a call: the batch's flush is already due
        self._added()

    def _define(self, template: LogTemplate, headers: LogTemplate) -> None:
        """Defines the template and the header set (those not defined on this connection yet)."""
        if self._rows:
            self._close_rows()
        for kind, item in ((b"T", template), (b"H", headers)):
            if item.generation != self.generation:
                self._next_template += 1
                item.number = self._next_template
                item.generation = self.generation
                self._pending.append(b'["%b",%d,%b]' % (kind, item.number, item.definition))

    def _close_rows(self) -> None:
        self._pending.append(orjson.dumps(self._rows))
        self._rows = []

    def _flush(self) -> None:
        self._scheduled = False
        if self._rows:
            self._close_rows()
        pending, self._pending = self._pending, []
        records, self._pending_records = self._pending_records, 0
        if not pending:
            return
        transport = self._transport
        if transport is None or transport.is_closing():
            self._transport = None
            self.lost += records
            self.generation += 1
            self._connect()
            return
        if transport.get_write_buffer_size() > self.max_buffer:
            self.lost += records
            self.generation += 1  # the batch may have held template definitions
            return
        transport.write(b"\n".join(pending) + b"\n")
        self.sent += records

    def _connect(self) -> None:
        if self._connecting or time.monotonic() < self._next_try or self._loop is None:
            return
        self._connecting = True
        self._next_try = time.monotonic() + self.retry
        self._loop.create_task(self._open())

    async def _open(self) -> None:
        try:
            loop = asyncio.get_running_loop()
            transport, _ = await loop.create_unix_connection(lambda: _Sink(self), self.path)
            transport.set_write_buffer_limits(high=self.high_water, low=self.low_water)
            self.generation += 1  # a new connection knows no template
            self._transport = transport
        except OSError:
            self._transport = None
        finally:
            self._connecting = False

    async def start(self) -> None:
        """Connects once at start-up (a missing socket is retried on the next record)."""
        self._loop = asyncio.get_running_loop()
        self._connecting = True
        await self._open()

    async def aclose(self, timeout: float = 2.0) -> None:
        """Sends what is pending, waits (bounded) until it is written, closes."""
        self._flush()
        deadline = time.monotonic() + timeout
        while (
            self._transport is not None
            and self._transport.get_write_buffer_size()
            and time.monotonic() < deadline
        ):
            await asyncio.sleep(0.01)
        self.close()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class _Sink(asyncio.Protocol):
    def __init__(self, writer: AccessLogWriter) -> None:
        self.writer = writer

    def data_received(self, data: bytes) -> None:  # the node never writes
        pass

    def pause_writing(self) -> None:
        self.writer._congestion(True)

    def resume_writing(self) -> None:
        self.writer._congestion(False)

    def connection_lost(self, exc: Exception | None) -> None:
        self.writer._congestion(False)


class AccessLogReader:
    """A plain node side (tests, tools): a listening unix socket; every record is handed to
    ``on_record`` as a dict (in a thread)."""

    def __init__(
        self,
        path: str,
        on_record: Callable[[dict[str, Any]], None],
        correlations: list[tuple[int, str] | None] | None = None,
    ) -> None:
        """``correlations``: a list that gets each record's correlation as its line carried it
        (None: the node would correlate the record itself)."""
        self.path = path
        self.on_record = on_record
        self.correlations = correlations
        self.received = 0
        self.bad = 0
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(path)
        os.chmod(path, 0o600)
        self._sock.listen(8)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._serve, name="accesslog-accept", daemon=True)
        self._accept.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._read, args=(conn,), name="accesslog-read", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _read(self, conn: socket.socket) -> None:
        assembler = RecordAssembler()
        with conn:
            for line in _lines(conn):
                records, _, correlations = assembler.assemble(line)
                self.bad += assembler.bad
                assembler.bad = 0
                self.received += len(records)
                if self.correlations is not None:
                    self.correlations.extend(correlations)
                for record in records:
                    self.on_record(whole_record(record))

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def _lines(conn: socket.socket) -> Iterator[bytes]:
    rest = b""
    while True:
        try:
            data = conn.recv(1 << 18)
        except OSError:
            return
        if not data:
            return
        data = rest + data
        *lines, rest = data.split(b"\n")
        yield from (line for line in lines if line)


def special_headers(headers: list[tuple[bytes, bytes]]) -> tuple[str, str]:
    """(X-Request-Id, traceparent) of a record's headers as Hubble reads them: the first non-empty
    value of each, names matched without case."""
    request_id = traceparent = ""
    for name, value in headers:
        size = len(name)
        if size == 12 and not request_id and value and name.lower() == b"x-request-id":
            request_id = value.decode("latin-1")
        elif size == 11 and not traceparent and value and name.lower() == b"traceparent":
            traceparent = value.decode("latin-1")
    return request_id, traceparent


class LazyRecord:
    """A row's record as it arrived: its template's record, its time, its header set and the value
    of the set's X-Request-Id hole; :meth:`whole` makes the record dict (when a reader needs it)."""

    __slots__ = ("base", "http", "ns", "headers", "request_id")

    def __init__(
        self,
        base: dict[str, Any],
        http: dict[str, Any],
        ns: int,
        headers: dict[str, list[str]],
        request_id: str | None,
    ) -> None:
        self.base = base
        self.http = http
        self.ns = ns
        self.headers = headers
        self.request_id = request_id

    def whole(self) -> dict[str, Any]:
        """The record dict."""
        record = self.base.copy()
        record["Timestamp"] = timestamp(self.ns)
        http = self.http.copy()
        headers = {name: list(values) for name, values in self.headers.items()}
        if self.request_id is not None:
            headers[_REQUEST_ID] = [self.request_id]  # the hole keeps its place in the order
        http["Headers"] = headers
        record["HTTP"] = http
        return record


def whole_record(record: dict[str, Any] | LazyRecord) -> dict[str, Any]:
    """The record dict of what :meth:`RecordAssembler.assemble` gives (a lazy row made whole)."""
    return record.whole() if isinstance(record, LazyRecord) else record


_ASSEMBLER_SERIALS = itertools.count(1)  # a module global: compiled, a class attribute would be per instance


class RecordAssembler:
    """One access-log connection's lines -> records (see the module's docstring): dicts, and
    :class:`LazyRecord` for rows (:meth:`rows`, for lines starting ``[[``).

    :meth:`record` gives the record of another line, or None for a definition and for a line that
    is not a record (counted in ``bad``: not JSON, not an object, an unknown template). For a
    templated record, ``key`` is then ``(assembler serial, template number)``: the same key means
    the same record but for ``Timestamp`` and ``HTTP.Headers`` (None for whole records).
    ``correlation`` is the record's ``(latency ns, trace ID)`` when the line carried it, else None
    (the node correlates the record itself).
    """

    def __init__(self) -> None:
        self.serial = next(_ASSEMBLER_SERIALS)
        self.templates: dict[int, tuple[dict[str, Any], dict[str, Any], tuple[int, int]]] = {}
        self.header_sets: dict[int, dict[str, list[str]]] = {}
        self.bad = 0
        self.key: tuple[int, int] | None = None
        self.correlation: tuple[int, str] | None = None

    def assemble(
        self, line: bytes
    ) -> tuple[
        Sequence[dict[str, Any] | LazyRecord],
        Sequence[tuple[int, int] | None],
        Sequence[tuple[int, str] | None],
    ]:
        """The records of any line (none for a definition or a bad line), their keys and their
        correlations: :meth:`rows` for a batch of rows, else :meth:`record`'s one."""
        if line[:2] == b"[[":
            return self.rows(line)
        record = self.record(line)
        if record is None:
            return [], [], []
        return [record], [self.key], [self.correlation]

    def record(self, line: bytes) -> dict[str, Any] | None:
        """The record of a line that is not a row batch (see :meth:`rows`)."""
        self.key = None
        self.correlation = None
        if line[:1] == b"=":
            parts = line[1:].split(b" ", 2)
            if len(parts) == 3 and parts[0].isdigit() and (parts[1] == b"-" or parts[1].isalnum()):
                try:
                    value = orjson.loads(parts[2])
                except orjson.JSONDecodeError:
                    value = None
                if type(value) is dict:
                    trace = parts[1]
                    self.correlation = (int(parts[0]), "" if trace == b"-" else trace.decode())
                    return value
            self.bad += 1
            return None
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            self.bad += 1
            return None
        if type(value) is dict:
            return value
        if type(value) is list:
            if len(value) == 3 and type(value[0]) is int:
                found = self.templates.get(value[0])
                stamp, headers = value[1], value[2]
                if found is not None and type(stamp) is str and type(headers) is dict:
                    base, http, key = found
                    record = base.copy()
                    record["Timestamp"] = stamp
                    http = http.copy()
                    http["Headers"] = headers
                    record["HTTP"] = http
                    self.key = key
                    return record
            elif len(value) == 3 and value[0] == "T" and type(value[1]) is int:
                definition = value[2]  # (not ``base``: compiled, a variable keeps its first type)
                if type(definition) is dict and type(definition.get("HTTP")) is dict:
                    self.templates[value[1]] = (definition, definition["HTTP"], (self.serial, value[1]))
                    return None
            elif len(value) == 3 and value[0] == "H" and type(value[1]) is int and _is_header_map(value[2]):
                self.header_sets[value[1]] = value[2]
                return None
        self.bad += 1
        return None

    def rows(self, line: bytes) -> tuple[list[LazyRecord], list[tuple[int, int]], list[tuple[int, str]]]:
        """The records of a row batch (a line starting ``[[``), their keys and their correlations;
        a row that is not one (bad shape, unknown template or header set) is counted in ``bad``."""
        records: list[LazyRecord] = []
        keys: list[tuple[int, int]] = []
        correlations: list[tuple[int, str]] = []
        try:
            rows = orjson.loads(line)
        except orjson.JSONDecodeError:
            self.bad += 1
            return records, keys, correlations
        if type(rows) is not list:
            self.bad += 1
            return records, keys, correlations
        templates, header_sets = self.templates, self.header_sets
        for row in rows:
            try:
                number, ns, latency, trace_id, headers, request_id = row
                base, http, key = templates[number]
                header_map = header_sets[headers]
            except (TypeError, ValueError, KeyError):
                self.bad += 1
                continue
            if (
                type(ns) is not int
                or type(latency) is not int
                or type(trace_id) is not str
                or (request_id is not None and type(request_id) is not str)
            ):
                self.bad += 1
                continue
            records.append(LazyRecord(base, http, ns, header_map, request_id))
            keys.append(key)
            correlations.append((latency, trace_id))
        return records, keys, correlations


def _is_header_map(value: Any) -> bool:
    return type(value) is dict and all(
        type(values) is list and all(type(v) is str for v in values) for values in value.values()
    )
