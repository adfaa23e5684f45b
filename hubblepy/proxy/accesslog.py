"""Access-log records (Cilium's ``accesslog.LogRecord`` JSON keys) and their transport to the node.

Transport: newline-delimited JSON (orjson) over a unix stream socket. The node listens
(:class:`AccessLogReader`); the proxy connects (:class:`AccessLogWriter`), batches records (up to 256
or 5 ms) into one write, reconnects when the node restarts the socket, and counts the records
it had to drop (node not listening, or more than ``max_buffer`` bytes waiting).

A line is either a whole record (a JSON object) or, for the records a proxy builds from a template
(:class:`LogTemplate`: every field but ``Timestamp`` and ``HTTP.Headers`` fixed, e.g. one
connection's requests under one verdict), a compact JSON list: ``["T", id, {record}]`` defines
template ``id`` on this connection (the record with ``"Timestamp": ""`` and ``"Headers": {}``), and
``[id, "timestamp", {headers}]`` is one record of it. :class:`RecordAssembler` (one per connection)
turns both kinds back into the same record dicts; the writer defines a template again after
anything that may have lost its definition (a new connection, dropped lines). When the node reads
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

TYPE_REQUEST = "Request"
TYPE_RESPONSE = "Response"
VERDICT_FORWARDED = "Forwarded"
VERDICT_DENIED = "Denied"
VERDICT_ERROR = "Error"
INGRESS = "Ingress"
EGRESS = "Egress"


_last_second: list = [-1, ""]  # [the second, its formatted text]


def timestamp(ns: int) -> str:
    """RFC 3339 with nanoseconds, UTC (Go's time.RFC3339Nano without trailing zeros)."""
    seconds, frac = divmod(ns, 1_000_000_000)
    if seconds != _last_second[0]:
        _last_second[0] = seconds
        _last_second[1] = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    text: str = _last_second[1]
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

    def emit_templated(self, template: LogTemplate, stamp: bytes, headers: bytes) -> None:
        """One record of ``template``: its ``Timestamp`` text and its ``HTTP.Headers`` JSON object."""
        pending = self._pending
        if template.generation != self.generation:
            self._next_template += 1
            template.number = self._next_template
            template.generation = self.generation
            pending.append(b'["T",%d,%b]' % (template.number, template.definition))
        pending.append(b'[%d,"%b",%b]' % (template.number, stamp, headers))
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
    """The node side: a listening unix socket; every record is handed to ``on_record`` (in a thread)."""

    def __init__(self, path: str, on_record: Callable[[dict[str, Any]], None]) -> None:
        self.path = path
        self.on_record = on_record
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
                if record is None:
                    if assembler.bad:
                        self.bad += assembler.bad
                        assembler.bad = 0
                    continue
                self.received += 1
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


class RecordAssembler:
    """One access-log connection's lines -> record dicts: JSON objects as they are, compact lines
    from the connection's templates (see the module's docstring).

    :meth:`record` gives the record of a line, or None for a template definition and for a line
    that is not a record (counted in ``bad``: not JSON, not an object, an unknown template). For a
    templated record, ``key`` is then ``(assembler serial, template number)``: the same key means
    the same record but for ``Timestamp`` and ``HTTP.Headers`` (None for whole records).
    """

    _serials = iter(range(1, 1 << 62))

    def __init__(self) -> None:
        self.serial = next(self._serials)
        self.templates: dict[int, tuple[dict[str, Any], dict[str, Any], tuple[int, int]]] = {}
        self.bad = 0
        self.key: tuple[int, int] | None = None

    def record(self, line: bytes) -> dict[str, Any] | None:
        self.key = None
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
