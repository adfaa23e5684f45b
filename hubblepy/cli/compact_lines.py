"""Compact output of a flows file without filters: lines that match a checked template cost a cut.

This is `hubble observe --input-file` at its most common (``-o compact``, every flow). A line that
matches a checked template (:mod:`hubblepy.codec.templates`) is valid and canonical, so upstream
prints it without a warning, and its compact text is the template's text with the line's time and
hole values put in. Such a line is printed here straight from its bytes: one :func:`cut`, one
dictionary look-up, one ``%``. A line of a template that cannot be printed so (colours, another
time format) is printed by :meth:`Printer.write_templated`; every other line is decoded as the
general reader does it (``observe._matching_in_batch`` without filters), with the same warnings,
and teaches the cache its template.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import itemgetter
from typing import TYPE_CHECKING

from hubblepy.cli import parallel_input
from hubblepy.codec.errors import DecodeError
from hubblepy.codec.templates import MAX_TEMPLATES, TemplateCache, cut

if TYPE_CHECKING:
    from hubblepy.codec.decoder import ResponseDecoder
    from hubblepy.printer import Printer

_UNKNOWN = (-1, b"", None, None)  # no checked template for the key (yet)
_HEADS_LIMIT = 8192


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
        self._formats[key] = found
        return found

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
        templates = self._templates
        decode = decoder.decode
        out: list[bytes] = []
        append = out.append
        for index, line in enumerate(lines):
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

    def _head(self, token: bytes, printer: Printer) -> bytes | None:
        """The printed time of a timestamp token before its milliseconds, kept by its second."""
        head = printer.compact_stamp_head(token)
        if head is not None:
            if len(self._heads) >= _HEADS_LIMIT:
                self._heads.clear()
            self._heads[token[1:20]] = head
        return head
