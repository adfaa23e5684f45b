"""Decoding JSON lines and dicts into canonical dicts (``hubble observe --input-file`` semantics)."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson

from . import jsontext, schema
from .canonical import canonical_checker
from .errors import DecodeError
from .normalize import Pairs, Problem, normalize_message

_loads = orjson.loads
_dumps = orjson.dumps
_JSONDecodeError = orjson.JSONDecodeError
_html_escape = jsontext.html_escape
_U2028 = "\u2028".encode()
_U2029 = "\u2029".encode()


def _has_html_chars(data: bytes) -> bool:
    """Whether compact JSON bytes hold a character Go writes as an HTML escape.

    Integer needles make ``in`` a plain memchr (several times faster than b"<").
    """
    return (
        60 in data  # <
        or 62 in data  # >
        or 38 in data  # &
        or (not data.isascii() and (_U2028 in data or _U2029 in data))
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


_slow_loads = json.JSONDecoder(
    object_pairs_hook=Pairs, parse_float=Decimal, parse_constant=_reject_constant
).decode


def _parse_text(text: str) -> Any:
    """Parse JSON text keeping member order and duplicates; Go-style error if invalid."""
    try:
        obj = _slow_loads(text)
    except (ValueError, RecursionError):
        raise jsontext.syntax_error(text) from None
    if ("\\ud" in text or "\\uD" in text) and _has_lone_surrogate(obj):
        # Go's protojson rejects a string with an unpaired surrogate escape (the scanner says where).
        raise jsontext.syntax_error(text)
    return obj


def _has_lone_surrogate(value: Any) -> bool:
    """Whether a parsed value holds a string with an unpaired UTF-16 surrogate."""
    if isinstance(value, str):
        return not value.isascii() and any("\ud800" <= ch <= "\udfff" for ch in value)
    if isinstance(value, Pairs):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value)
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(v) for v in value)
    return False


def _problem_error(text: str, problem: Problem) -> DecodeError:
    return jsontext.semantic_error(
        text, problem.path, problem.at_key, problem.template, problem.syntax, problem.unknown
    )


def parse_message(text: str | bytes, full_name: str, *, lenient: bool = False) -> dict:
    """Decode protojson text of message ``full_name`` into its canonical dict (strict by default)."""
    if isinstance(text, bytes):
        raw = text
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise jsontext.syntax_error(raw.decode("utf-8", "surrogateescape")) from None
    obj = _parse_text(text)
    try:
        return normalize_message(obj, schema.message_info(full_name), (), lenient)
    except Problem as problem:
        raise _problem_error(text, problem) from None


def normalize(obj: dict, full_name: str, *, lenient: bool = False) -> dict:
    """Canonical dict of message ``full_name`` from a protojson-like dict (any accepted names/forms).

    Error positions refer to the compact JSON rendering of ``obj`` (exact when the
    user typed compact JSON, e.g. ``--allowlist '{"bogus":1}'`` gives line 1:2).
    """
    try:
        return normalize_message(obj, schema.message_info(full_name), (), lenient)
    except Problem as problem:
        try:
            text = orjson.dumps(obj).decode()
        except TypeError:
            text = ""
        raise _problem_error(text, problem) from None


class ResponseDecoder:
    """Decoder for the lines of ``hubble observe --input-file``.

    ``decode(line)`` returns the canonical ``GetFlowsResponse`` dict of one line
    (bytes without the newline) or raises :class:`DecodeError` for a malformed
    line. After each call ``last_was_canonical`` tells whether the line bytes
    already were the canonical encoding (so they can be printed unchanged).

    The first line whose only problem is an unknown field or enum name is decoded
    leniently and kept; ``on_unknown_field`` receives the error text once, and
    from then on the decoder is lenient without further reports.
    """

    def __init__(
        self,
        on_unknown_field: Callable[[str], None] | None = None,
        *,
        full_name: str = "observer.GetFlowsResponse",
    ) -> None:
        self._info = schema.message_info(full_name)
        self._canonical = canonical_checker(self._info)
        self._canonical_no_empty = canonical_checker(self._info, no_empty_strings=True)
        self._on_unknown_field = on_unknown_field
        self.lenient = False
        self.last_was_canonical = False

    def decode(self, line: bytes) -> dict:
        try:
            obj = _loads(line)
        except _JSONDecodeError:
            pass
        else:
            if type(obj) is dict:
                out = _dumps(obj)
                # The line must be the Go form: orjson's text with <, >, &, U+2028/9 escaped.
                if (
                    (
                        60 not in line
                        and 62 not in line
                        and 38 not in line
                        and (line.isascii() or not _has_html_chars(line))
                    )
                    if out == line
                    else (_html_escape(out) == line)
                ):
                    check = self._canonical if b'""' in line else self._canonical_no_empty
                    try:
                        canonical = check(obj)
                    except (TypeError, AttributeError, ValueError):
                        canonical = False
                    if canonical:
                        self.last_was_canonical = True
                        return obj
        self.last_was_canonical = False
        return self._decode_slow(line)

    def _decode_slow(self, line: bytes) -> dict:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            raise jsontext.syntax_error(line.decode("utf-8", "surrogateescape")) from None
        obj = _parse_text(text)
        try:
            return normalize_message(obj, self._info, (), self.lenient)
        except Problem as problem:
            if not problem.unknown or self.lenient:
                raise _problem_error(text, problem) from None
            warning = _problem_error(text, problem)
        self.lenient = True
        if self._on_unknown_field is not None:
            self._on_unknown_field(warning.message)
        try:
            return normalize_message(obj, self._info, (), True)
        except Problem as problem:
            raise _problem_error(text, problem) from None
