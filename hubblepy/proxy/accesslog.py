"""Access-log records (Cilium's ``accesslog.LogRecord`` JSON keys) and their transport to the node.

Transport: newline-delimited JSON (orjson) over a unix stream socket. The node listens
(:class:`AccessLogReader`); the proxy connects (:class:`AccessLogWriter`), batches records (up to 256
or 5 ms) into one write, reconnects when the node restarts the socket, and counts the records
it had to drop (node not listening, or more than ``max_buffer`` bytes waiting).

A line is one of:

- a whole record, a JSON object; the node correlates it (below) itself;
- ``=LATENCY TRACE {record}``: a whole record with its correlation worked out by the proxy;
- ``["T", id, {record}]``: defines template ``id`` on this connection (:class:`LogTemplate`: a record
  with ``"Timestamp": ""`` and ``"Headers": {}``, every other field fixed, e.g. one connection's
  requests under one verdict);
- ``ID NS LATENCY TRACE {headers}``: one record of template ``ID``, its time in Unix nanoseconds
  and its ``HTTP.Headers`` JSON object, with its correlation;
- ``[id, "timestamp", {headers}]``: one record of a template that the node correlates itself.

Correlation is what Hubble's L7 parser works out from the records before a record (the
``X-Request-Id`` table: a response's latency and the trace ID of its request's ``traceparent``).
The HTTP proxy keeps that table for its own records (:class:`Correlator`, the same rules), so the
node neither parses their headers nor builds their dicts when they arrive: ``LATENCY`` is in
nanoseconds and ``TRACE`` is the trace ID or ``-`` for none. :class:`RecordAssembler` (one per
connection) turns every kind back into records (:class:`LazyRecord` for templated ones, made whole
when read); the writer defines a template again after anything that may have lost its definition
(a new connection, dropped lines). When the node reads
slower than the proxy writes (more than ``high_water`` bytes waiting), ``on_congestion(True)`` lets the
proxy slow its clients down until the backlog is below ``low_water`` (``on_congestion(False)``); the
proxy bounds how long it waits, so a stuck node never blocks requests for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import orjson

from hubblepy.parser.seven import DEFAULT_REQUEST_CACHE_SIZE, trace_id_from_traceparent

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
# the JSON of header lists, by the list without its last header (see header_json)
_HEADER_JSON: dict[tuple, tuple[bytes, bool]] = {}


def header_json(headers: list[tuple[bytes, bytes]]) -> bytes:
    """``orjson.dumps(header_map(headers))``, cached for what repeats on a connection: the headers
    before a last ``X-Request-Id`` (the proxy's own, different for every request and response)."""
    if not headers or headers[-1][0] != b"X-Request-Id":
        return orjson.dumps(header_map(headers))
    key = tuple(headers[:-1])
    found = _HEADER_JSON.get(key)
    if found is None:
        mapped = header_map(headers[:-1])
        found = (orjson.dumps(mapped), _REQUEST_ID in mapped)
        if len(_HEADER_JSON) >= 4096:
            _HEADER_JSON.clear()
        _HEADER_JSON[key] = found
    head, has_id = found
    if has_id:  # another X-Request-Id before it: its values go together
        return orjson.dumps(header_map(headers))
    value = orjson.dumps([headers[-1][1].decode("latin-1")])
    if head == b"{}":
        return b'{"X-Request-Id":%b}' % value
    return b'%b,"X-Request-Id":%b}' % (head[:-1], value)


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
    """A record with two holes, ``Timestamp`` and ``HTTP.Headers``, sent once per connection and
    then referred to by number (see :meth:`AccessLogWriter.emit_templated`)."""

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
        delay: float = 0.005,
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
        self._pending_records = 0  # records in _pending (template definitions are not records)
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
        pending = self._pending
        pending.append(record)
        self._pending_records += 1
        self._added()

    def _added(self) -> None:
        if len(self._pending) >= self.batch:
            self._flush()
        elif not self._scheduled:
            self._scheduled = True
            if self._loop is None:
                self._loop = asyncio.get_running_loop()
            # a few milliseconds of batching: one write (and one wake-up of the node) per batch
            self._loop.call_later(self.delay, self._flush)

    def emit_correlated(self, record: bytes, latency: int, trace_id: bytes) -> None:
        """A whole record (one line of JSON) and its correlation (see :class:`Correlator`)."""
        self._pending.append(b"=%d %b %b" % (latency, trace_id or b"-", record))
        self._pending_records += 1
        self._added()

    def emit_templated(
        self, template: LogTemplate, ns: int, latency: int, trace_id: bytes, headers: bytes
    ) -> None:
        """One record of ``template``: its time (Unix ns), its correlation (see :class:`Correlator`)
        and its ``HTTP.Headers`` JSON object."""
        pending = self._pending
        if template.generation != self.generation:
            self._next_template += 1
            template.number = self._next_template
            template.generation = self.generation
            pending.append(b'["T",%d,%b]' % (template.number, template.definition))
        pending.append(b"%d %d %d %b %b" % (template.number, ns, latency, trace_id or b"-", headers))
        self._pending_records += 1
        self._added()

    def _flush(self) -> None:
        self._scheduled = False
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
                record = assembler.record(line)
                if isinstance(record, LazyRecord):
                    try:
                        record = record.whole()
                    except ValueError:
                        record = None
                        assembler.bad += 1
                if record is None:
                    if assembler.bad:
                        self.bad += assembler.bad
                        assembler.bad = 0
                    continue
                self.received += 1
                if self.correlations is not None:
                    self.correlations.append(assembler.correlation)
                self.on_record(record)

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


class Correlator:
    """The ``X-Request-Id`` table of Hubble's L7 parser, kept by the proxy for the records it writes:
    a request remembers its time and trace ID under its X-Request-Id (the oldest of ``size`` ids is
    forgotten first), a response takes them back (latency = response time - request time). Call it
    once per record written, in order, as the node would have (``SevenParser.correlate``)."""

    def __init__(self, size: int = DEFAULT_REQUEST_CACHE_SIZE) -> None:
        self.size = size
        self._requests: dict[str, tuple[int, bytes]] = {}

    def request(self, ns: int, request_id: str, traceparent: str) -> bytes:
        """A request record's trace ID (b"" for none); its latency is 0."""
        trace_id = trace_id_from_traceparent(traceparent).encode() if traceparent else b""
        if request_id:
            requests = self._requests
            if request_id in requests:
                del requests[request_id]
            elif len(requests) >= self.size:
                del requests[next(iter(requests))]
            requests[request_id] = (ns, trace_id)
        return trace_id

    def response(self, ns: int, request_id: str) -> tuple[int, bytes]:
        """A response record's (latency ns, trace ID)."""
        if request_id:
            seen = self._requests.pop(request_id, None)
            if seen is not None:
                return max(0, ns - seen[0]), seen[1]
        return 0, b""


class LazyRecord:
    """A templated record as it arrived: its template's record, its time and its headers' JSON;
    :meth:`whole` makes the record dict (when a reader needs the flow)."""

    __slots__ = ("base", "http", "ns", "headers")

    def __init__(self, base: dict[str, Any], http: dict[str, Any], ns: int, headers: bytes) -> None:
        self.base = base
        self.http = http
        self.ns = ns
        self.headers = headers

    def whole(self) -> dict[str, Any]:
        """The record dict; raises ``ValueError`` when the headers are not JSON."""
        record = self.base.copy()
        record["Timestamp"] = timestamp(self.ns)
        http = self.http.copy()
        http["Headers"] = orjson.loads(self.headers)
        record["HTTP"] = http
        return record


class RecordAssembler:
    """One access-log connection's lines -> records (see the module's docstring): dicts, and
    :class:`LazyRecord` for the templated lines that carry their correlation.

    :meth:`record` gives the record of a line, or None for a template definition and for a line
    that is not a record (counted in ``bad``: not JSON, not an object, an unknown template). For a
    templated record, ``key`` is then ``(assembler serial, template number)``: the same key means
    the same record but for ``Timestamp`` and ``HTTP.Headers`` (None for whole records).
    ``correlation`` is the record's ``(latency ns, trace ID)`` when the line carried it, else None
    (the node correlates the record itself).
    """

    _serials = iter(range(1, 1 << 62))

    def __init__(self) -> None:
        self.serial = next(self._serials)
        self.templates: dict[int, tuple[dict[str, Any], dict[str, Any], tuple[int, int]]] = {}
        self.bad = 0
        self.key: tuple[int, int] | None = None
        self.correlation: tuple[int, str] | None = None

    def record(self, line: bytes) -> dict[str, Any] | LazyRecord | None:
        self.key = None
        self.correlation = None
        first = line[:1]
        if first.isdigit():
            parts = line.split(b" ", 4)
            if len(parts) == 5:
                number, ns, latency, trace, headers = parts
                found = self.templates.get(int(number)) if number.isdigit() else None
                if (
                    found is not None
                    and ns.isdigit()
                    and latency.isdigit()
                    and headers[:1] == b"{"
                    and headers[-1:] == b"}"
                    and (trace == b"-" or trace.isalnum())
                ):
                    base, http, key = found
                    self.key = key
                    self.correlation = (int(latency), "" if trace == b"-" else trace.decode())
                    return LazyRecord(base, http, int(ns), headers)
            self.bad += 1
            return None
        if first == b"=":
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
                base = value[2]
                if type(base) is dict and type(base.get("HTTP")) is dict:
                    self.templates[value[1]] = (base, base["HTTP"], (self.serial, value[1]))
                    return None
        self.bad += 1
        return None
