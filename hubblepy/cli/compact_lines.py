"""Compact output of a flows file without filters: lines that match a checked template cost a cut.

This is `hubble observe --input-file` at its most common (``-o compact``, every flow). A line that
matches a checked template (:mod:`hubblepy.codec.templates`) is valid and canonical, so upstream
prints it without a warning, and its compact text is the template's text with the line's time and
hole values put in. Such a line is printed here straight from its bytes: one :func:`cut`, one
dictionary look-up, one ``%``. The usual shapes (an L3/L4 flow, an HTTP or DNS record) go quicker
still: their holes are found at their places, their templates by the lengths of the texts between
the holes, and the texts compared in place with the template's (no copy and no hash of the 1.1 KB
of text a line holds); a line that differs anywhere goes on to the general path. A line of a
template that cannot be printed so (colours, another time format) is printed by
:meth:`Printer.write_templated`; every other line is decoded as the general reader does it (``observe._matching_in_batch`` without filters), with the same warnings,
and teaches the cache its template.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from operator import itemgetter
from typing import TYPE_CHECKING

from hubblepy.cli import parallel_input
from hubblepy.codec.errors import DecodeError
from hubblepy.codec.templates import (
    _DESTINATION_PORT_TEXT,
    _FLOW_TIME_PREFIX,
    _FLOW_TIME_TEXT,
    _PORTS_SUMMARY_KINDS,
    _STRING_BYTES,
    _UUID_TEXT,
    DESTINATION_PORT,
    FLOW_TIME,
    HTTP_CODE,
    HTTP_METHOD,
    HTTP_URL,
    LATENCY,
    MAX_TEMPLATES,
    SOURCE_PORT,
    SUMMARY,
    TIME,
    UUID,
    TemplateCache,
    _timestamp_ok,
    cut,
)

if TYPE_CHECKING:
    from hubblepy.codec.decoder import ResponseDecoder
    from hubblepy.printer import Printer

_UNKNOWN = (-1, b"", None, None)  # no checked template for the key (yet)
_HEADS_LIMIT = 8192
_QUICK_COLLISIONS = 16  # templates kept for one fingerprint (the others take the general path)
# ``text.translate(_PLAIN_TABLE) == text`` when each byte of ``text`` is one of _STRING_BYTES (a
# string's value is its text): the table changes every other byte (faster than deleting them).
_PLAIN_TABLE = bytes(c if c in _STRING_BYTES else (c + 1) % 256 for c in range(256))
_LATENCY_BIT, _CODE_BIT, _METHOD_BIT, _URL_BIT = 1 << LATENCY, 1 << HTTP_CODE, 1 << HTTP_METHOD, 1 << HTTP_URL
_SUMMARY_BIT = 1 << SUMMARY
_QUICK_L7_KINDS = _LATENCY_BIT | _CODE_BIT | _METHOD_BIT | _URL_BIT
_PORTS_KINDS = 1 << FLOW_TIME | 1 << UUID | 1 << SOURCE_PORT | 1 << DESTINATION_PORT | 1 << TIME
_QUICK_L7_BASE = _PORTS_KINDS
# Both ports of the quick path's shape, from the first port's digits (canonical: no leading zero,
# at most 9 digits, then what follows a port in the L4 record).
_QUICK_PORTS = re.compile(rb'([1-9][0-9]{0,8}),"destination_port":([1-9][0-9]{0,8})(?=[,}])')


def _getter(holes: tuple[int, ...]) -> Callable[[list[bytes]], tuple[bytes, ...]]:
    """A function giving the tuple of a line's hole values at ``holes``."""
    if len(holes) >= 2:
        return itemgetter(*holes)
    if holes:
        only = holes[0]
        return lambda values: (values[only],)
    return lambda values: ()


class CompactLines:
    """The per-run state of the fast path: each template key's byte format, and time heads."""

    def __init__(self, templates: TemplateCache, warn_bad_line: Callable[..., None]) -> None:
        self._templates = templates
        self._warn_bad_line = warn_bad_line  # (err_write, line, line_number, decoder, exc)
        # template key -> (time hole, byte format or b"" when not printable so, getter, template)
        self._formats: dict[tuple, tuple] = {}
        self._heads: dict[bytes, bytes] = {}  # "YYYY-MM-DDTHH:MM:SS" -> printed time before ".ms"
        # The quick path's templates (see _quick_entry), by the lengths of their three texts.
        self._quick: dict[tuple[int, int, int], list[tuple[bytes, bytes, bytes, bytes, bool]]] = {}
        # The same for the L7 shapes: (kinds, at, lengths of the texts after the ports) -> entries.
        self._quick_l7s: dict[tuple[int, ...], list[tuple[bytes, tuple[bytes, ...], bytes, Callable]]] = {}
        self.general_lines = 0  # lines the quick path left to the general one (tests read it)

    def _format(self, key: tuple, line: bytes, printer: Printer, record: dict | None = None) -> tuple:
        """The entry of ``_formats`` for a key, made from its checked template, or ``_UNKNOWN``
        (not kept: the key may be learned later). ``record`` is the line's dict if decoded."""
        template = self._templates.get(key)
        if template is None:
            return _UNKNOWN
        made = printer.compact_line_format(line, template, record)
        found = (-1, b"", None, template) if made is None else (*made[:2], _getter(made[2]), template)
        if len(self._formats) >= MAX_TEMPLATES:
            self._formats.clear()
            self._quick.clear()
            self._quick_l7s.clear()
        self._formats[key] = found
        if made is not None:
            self._quick_entry(key, made)
        return found

    def _quick_entry(self, key: tuple, made: tuple[int, bytes, tuple[int, ...]]) -> None:
        """Let the quick path print the lines of ``key`` when it is the usual L3/L4 shape.

        That shape is ``{"flow":{"time":`` T ``,"uuid":`` U m1 S ``,"destination_port":`` D m2 M m3 T
        ``}`` where T is a flow time with 9 fraction digits, U a 36-character UUID (so m1 starts at
        byte 94), S and D the ports, M the summary's text; m1 ends with ``"source_port":``, m2 with
        ``,"Summary":"``. The texts are found again by their lengths and compared in place, so that
        the line's 1.1 KB of text is neither copied nor hashed. The compact text must be the format
        filled with the time, both ports (in either order) and the summary.
        """
        time_slot, fmt, holes = made
        if (
            key[0] & _QUICK_L7_KINDS
            and key[0] & _PORTS_KINDS == _PORTS_KINDS
            and key[1] == _FLOW_TIME_TEXT
            and key[2] == _UUID_TEXT
            and key[4] == _DESTINATION_PORT_TEXT
            and key[-1] == b"}"
            and time_slot == 0
            and key[3].endswith(b'"source_port":')
        ):
            texts = key[5:-1]
            fingerprint = (key[0], 94 + len(key[3]), *map(len, texts))
            found = self._quick_l7s.setdefault(fingerprint, [])
            if (
                len(found) < _QUICK_COLLISIONS
                and min(holes, default=0) >= 2
                and max(holes) < key[0].bit_count() - 1
            ):
                found.append((key[3], texts, fmt, _getter(holes)))
            return
        if (
            key[0] != _PORTS_SUMMARY_KINDS
            or key[1] != _FLOW_TIME_TEXT
            or key[2] != _UUID_TEXT
            or key[4] != _DESTINATION_PORT_TEXT
            or key[7] != b"}"
            or time_slot != 0
            or holes not in ((2, 3, 4), (3, 2, 4))
            or not key[3].endswith(b'"source_port":')
            or not key[5].endswith(b',"Summary":"')
        ):
            return
        _, _, _, m1, _, m2, m3, _ = key
        entries = self._quick.setdefault((94 + len(m1), len(m2), len(m3) + 33), [])
        if len(entries) < _QUICK_COLLISIONS:
            entries.append((m1, m2, m3, fmt, holes[0] == 3))

    def print_lines(
        self,
        lines: list[bytes],
        first_line_number: int,
        decoder: ResponseDecoder,
        printer: Printer,
        err_write: Callable[[str], object],
    ) -> None:
        """Print the compact text of every record of ``lines`` (numbered from ``first_line_number``).

        Raises :class:`parallel_input.StopBlock` as the general reader does, with the index of the
        line in ``lines``, after printing every line before it.
        """
        formats = self._formats
        heads = self._heads
        heads_get = heads.get
        quick_get = self._quick.get
        quick_l7 = self._quick_l7s
        ports_match = _QUICK_PORTS.match
        plain = _PLAIN_TABLE
        timestamp_ok = _timestamp_ok
        templates = self._templates
        decode = decoder.decode
        out: list[bytes] = []
        append = out.append
        general = 0
        for index, line in enumerate(lines):
            # The quick path (see _quick_entry): every byte of the line is compared with a checked
            # template's text or checked as a canonical hole value, or the line goes on below.
            if (
                line[46:57] == b'Z","uuid":"'
                and line[93:95] == b'",'
                and line[36] == 46  # "."
                and line.startswith(_FLOW_TIME_PREFIX)
            ):
                head = heads_get(line[17:36])  # only seconds that a line's time proved valid
                if head is None and timestamp_ok(line[16:48]):
                    head = self._head(line[16:48], printer)  # the first line of a second
                fraction = line[37:46]
                if (
                    head is not None
                    and fraction.isdigit()
                    and fraction[6:] != b"000"
                    and line[57:93].translate(plain) == line[57:93]
                ):
                    at = line.find(b'"source_port":', 94) + 14
                    ports = ports_match(line, at) if at > 107 else None
                    if ports is not None:
                        end = ports.end()
                        summary_at = line.rfind(b',"Summary":"', end) + 12
                        summary_end = line.find(b'"', summary_at)
                        candidates = quick_get((at, summary_at - end, len(line) - summary_end))
                        if candidates is not None and summary_end > summary_at > 11:
                            summary = line[summary_at:summary_end]
                            if (
                                summary.translate(plain) == summary
                                and line[-1] == 125  # "}"
                                and line.endswith(line[16:48], 0, -1)
                            ):
                                for m1, m2, m3, fmt, swapped in candidates:
                                    if (
                                        line.startswith(m2, end)
                                        and line.startswith(m1, 94)
                                        and line.startswith(m3, summary_end)
                                    ):
                                        source, destination = ports.groups()
                                        if swapped:
                                            source, destination = destination, source
                                        append(fmt % (head, fraction[:3], source, destination, summary))
                                        break
                                else:
                                    candidates = None
                                if candidates is not None:
                                    continue
                        if quick_l7:
                            text = self._quick_l7(line, ports, head, fraction[:3])
                            if text is not None:
                                append(text)
                                continue
            general += 1
            found = cut(line)
            if found is not None:
                key, values = found
                fast = formats.get(key)
                if fast is None:
                    fast = self._format(key, line, printer)
                if fast is not _UNKNOWN:
                    if fast[1]:
                        token = values[fast[0]]
                        head = heads.get(token[1:20])
                        if head is None:
                            head = self._head(token, printer)
                        if head is not None:
                            millis = token[21:24] if len(token) > 22 else b"000"
                            append(fast[1] % (head, millis, *fast[2](values)))
                            continue
                    if out:
                        printer.write_bytes(b"".join(out), len(out))
                        out.clear()
                    printer.write_templated(line, fast[3], values, None)
                    continue
            if out:
                printer.write_bytes(b"".join(out), len(out))
                out.clear()
            # A line to decode: its template is not known yet, or it has none, or it is malformed.
            try:
                record = decode(line)
            except DecodeError as exc:
                self._warn_bad_line(err_write, line, first_line_number + index, decoder, exc)
                continue
            except parallel_input.StopBlock as stop:
                stop.index = index
                raise
            if not decoder.last_was_canonical:
                printer.write(record, None)
                continue
            if found is not None and not templates.tried(found[0]):
                key, values = found
                if templates.learn(line, record, key) is not None:
                    fast = self._format(key, line, printer, record)
                    if fast[1]:
                        token = values[fast[0]]
                        head = heads.get(token[1:20]) or self._head(token, printer)
                        if head is not None:
                            millis = token[21:24] if len(token) > 22 else b"000"
                            append(fast[1] % (head, millis, *fast[2](values)))
                            continue
            printer.write(record, line)
        if out:
            printer.write_bytes(b"".join(out), len(out))
        self.general_lines += general

    def _quick_l7(self, line: bytes, ports: re.Match[bytes], head: bytes, millis: bytes) -> bytes | None:
        """The compact text of a line with an L7 record, by a quick template, or None.

        Called for a line whose time, UUID and ports the quick path has checked (``ports`` is its
        match). The L7 holes (latency, HTTP code, method and URL) and the summary are found as
        :func:`~hubblepy.codec.templates.cut` finds them (the L7 record and the summary searched from
        the line's end, where they are), each value checked the same way; the texts between them
        are then compared in place with those of the templates of the same lengths.
        """
        end = ports.end()
        at = line.rfind(b'"l7":{"type":"', end)
        if at < 0:
            return None
        plain = _PLAIN_TABLE
        pos = line.find(b'"', at + 14) + 1
        if not pos:
            return None
        kinds = 0
        spans: list[int] = []  # start and end of each hole after the ports
        span = spans.append
        if line.startswith(b',"latency_ns":"', pos):
            at = pos + 14
            stop = line.find(b'"', at + 1) + 1
            value = line[at + 1 : stop - 1]
            if stop and 0 < len(value) <= 19 and value.isdigit() and value[0] != 48:
                span(at)
                span(stop)
                kinds |= _LATENCY_BIT
                pos = stop
        if line.startswith(b',"http":{', pos):
            pos += 9
            if line.startswith(b'"code":', pos):
                at = pos + 7
                stop = line.find(b",", at)
                value = line[at:stop]
                if stop > at and len(value) <= 9 and value.isdigit() and value[0] != 48:
                    span(at)
                    span(stop)
                    kinds |= _CODE_BIT
                    pos = stop + 1
            if line.startswith(b'"method":"', pos):
                at = pos + 9
                stop = line.find(b'"', at + 1) + 1
                value = line[at + 1 : stop - 1]
                if stop and value and value.translate(plain) == value:
                    span(at)
                    span(stop)
                    kinds |= _METHOD_BIT
                    pos = stop + 1
            if line.startswith(b'"url":"', pos):
                at = pos + 6
                stop = line.find(b'"', at + 1) + 1
                value = line[at + 1 : stop - 1]
                if stop and value and value.translate(plain) == value:
                    span(at)
                    span(stop)
                    kinds |= _URL_BIT
                    pos = stop
        at = line.rfind(b',"Summary":"', pos)
        if at >= 0:
            at += 12
            stop = line.find(b'"', at)
            value = line[at:stop]
            if stop > at and value.translate(plain) == value:
                span(at)
                span(stop)
                kinds |= _SUMMARY_BIT
                pos = stop
        tail = len(line) - 33
        if not kinds or tail < pos or line[-1] != 125 or not line.endswith(line[16:48], 0, -1):
            return None
        # The lengths of the texts between the holes: after the ports, between holes, before the time.
        bounds = [end, *spans, tail]
        lengths = [stop - start for start, stop in zip(bounds[::2], bounds[1::2], strict=True)]
        candidates = self._quick_l7s.get((kinds | _QUICK_L7_BASE, ports.start(1), *lengths))
        if candidates is None:
            return None
        starts = bounds[::2]
        for m1, texts, fmt, holes in candidates:
            if line.startswith(m1, 94) and all(map(line.startswith, texts, starts)):
                # The values in cut's order: time, UUID (not printed), ports, the L7 holes, time.
                values = [
                    b"",
                    b"",
                    *ports.groups(),
                    *map(line.__getitem__, map(slice, spans[::2], spans[1::2])),
                ]
                return fmt % (head, millis, *holes(values))
        return None

    def _head(self, token: bytes, printer: Printer) -> bytes | None:
        """The printed time of a timestamp token before its milliseconds, kept by its second."""
        head = printer.compact_stamp_head(token)
        if head is not None:
            if len(self._heads) >= _HEADS_LIMIT:
                self._heads.clear()
            self._heads[token[1:20]] = head
        return head
