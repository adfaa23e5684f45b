"""JSON text: the upstream byte form on output, and Go-style error positions on input.

Output: upstream prints protojson through Go's ``encoding/json`` compaction with
HTML escaping. orjson already writes the same compact form and the same escapes
for ``"``, ``\\`` and control characters; only ``<``, ``>``, ``&``, U+2028 and
U+2029 need fixing afterwards.

Input errors: Go's decoder reports ``(line L:C)`` positions and its own wording.
The :class:`Scanner` here is a small tokenizer with the same structure rules,
used only when something is wrong (never on the hot path): to word syntax
errors, and to find where a semantic error (unknown field, bad value) sits.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from .errors import DecodeError

_dumps = orjson.dumps

_U2028 = "\u2028".encode()
_U2029 = "\u2029".encode()


def html_escape(data: bytes) -> bytes:
    """Apply Go's HTML escaping to compact JSON bytes (only where needed).

    Byte searches are much cheaper than a regex scan here, and the replacements
    only run when a character is present.
    """
    if 60 in data:  # integer needles: memchr
        data = data.replace(b"<", b"\\u003c")
    if 62 in data:
        data = data.replace(b">", b"\\u003e")
    if 38 in data:
        data = data.replace(b"&", b"\\u0026")
    if not data.isascii():
        data = data.replace(_U2028, b"\\u2028").replace(_U2029, b"\\u2029")
    return data


def encode(obj: Any) -> bytes:
    """Compact JSON exactly as Go's ``json.Encoder`` would print it, keys in dict order."""
    return html_escape(_dumps(obj))


def encode_response(d: dict) -> bytes:
    """Encode a canonical ``GetFlowsResponse`` dict as one upstream JSON line (no newline)."""
    return html_escape(_dumps(d))


# --- positions and Go-style syntax errors -------------------------------------------------

_ERR_VALUE = re.compile(r"[-+._a-zA-Z0-9/\\]{1,32}|.", re.S)
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_DELIMS = frozenset(' \t\r\n,:{}[]"')
_WS = re.compile(r"[ \t\r\n]*")
_PLAIN = re.compile(r'[^"\\\x00-\x1f\udc80-\udcff]*')  # stops at bytes kept by surrogateescape
_ESCAPES = frozenset('"\\/bfnrtu')
_HEX4 = re.compile(r"[0-9a-fA-F]{4}")


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _byte_len(text: str, pos: int) -> int:
    """UTF-8 length of ``text[pos:]`` (what Go's decoder has left of its input)."""
    rest = text[pos:]
    return len(rest) if rest.isascii() else len(_utf8(rest))


def _go_quote_bytes(text: str, pos: int, count: int) -> str:
    """Go's ``%q`` of the ``count`` input bytes at ``pos`` (cut bytes of a character show as ``\\xNN``)."""
    from hubblepy.gotext import go_quote

    return go_quote(_utf8(text[pos : pos + count])[:count].decode("utf-8", "surrogateescape"))


def line_col(text: str, pos: int) -> tuple[int, int]:
    """Go's (line, column): 1-based, column counted in characters."""
    line = text.count("\n", 0, pos) + 1
    start = text.rfind("\n", 0, pos) + 1
    return line, pos - start + 1


def go_quote_char(ch: str) -> str:
    """Go's %q of a rune, enough for control characters."""
    names = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}
    if ch in names:
        return f"'{names[ch]}'"
    if ord(ch) < 0x20 or ord(ch) == 0x7F:
        return f"'\\x{ord(ch):02x}'"
    return f"'{ch}'"


class _Unexpected(Exception):
    """Internal: a syntax problem at a position, or an unexpected end of input."""

    def __init__(self, pos: int | None, text: str) -> None:
        super().__init__(text)
        self.pos = pos
        self.text = text


class Scanner:
    """Tokenizer and structure checker with Go ``encoding/json``-like rules and wording."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    # tokens -------------------------------------------------------------------------------

    def _skip_ws(self) -> None:
        blank = _WS.match(self.text, self.pos)
        assert blank is not None  # the pattern matches the empty string
        self.pos = blank.end()

    def _invalid_value(self, pos: int) -> _Unexpected:
        found = _ERR_VALUE.match(self.text, pos)
        return _Unexpected(pos, f"invalid value {found.group() if found else ''}")

    def _string_end(self, start: int) -> int:
        """End (exclusive) of the string token starting at ``start`` (a quote).

        As Go's protojson, every problem inside a string is reported at the string's opening quote.
        """
        text = self.text
        i = start + 1
        while True:
            plain = _PLAIN.match(text, i)
            assert plain is not None  # the pattern matches the empty string
            i = plain.end()
            if i >= len(text):
                raise _Unexpected(None, "unexpected EOF")
            ch = text[i]
            if ch == '"':
                return i + 1
            if ch == "\\":
                if i + 1 >= len(text):
                    raise _Unexpected(None, "unexpected EOF")
                esc = text[i + 1]
                if esc not in _ESCAPES:
                    raise _Unexpected(start, f"invalid escape code {_go_quote_bytes(text, i, 2)} in string")
                if esc == "u":
                    i = self._unicode_escape(start, i)
                else:
                    i += 2
                continue
            if "\udc80" <= ch <= "\udcff":  # an undecodable byte kept by surrogateescape
                raise _Unexpected(start, "invalid UTF-8 in string")
            raise _Unexpected(start, f"invalid character {go_quote_char(ch)} in string")

    def _unicode_escape(self, start: int, i: int) -> int:
        """Position after the ``\\uXXXX`` escape at ``i`` (and its low surrogate when it is a high one)."""
        text = self.text
        if _byte_len(text, i) < 6:
            raise _Unexpected(None, "unexpected EOF")
        digits = text[i + 2 : i + 6]
        if not _HEX4.fullmatch(digits):
            raise _Unexpected(start, f"invalid escape code {_go_quote_bytes(text, i, 6)} in string")
        code = int(digits, 16)
        i += 6
        if not 0xD800 <= code <= 0xDFFF:
            return i
        # A surrogate must be a high one followed by an escaped low one; anything else is an error
        # (Go's protojson rejects the string where encoding/json would put U+FFFD).
        if _byte_len(text, i) < 6:
            raise _Unexpected(None, "unexpected EOF")
        low = text[i + 2 : i + 6]
        if (
            text[i : i + 2] != "\\u"
            or not _HEX4.fullmatch(low)
            or not (code < 0xDC00 and 0xDC00 <= int(low, 16) <= 0xDFFF)
        ):
            raise _Unexpected(start, f"invalid escape code {_go_quote_bytes(text, i, 6)} in string")
        return i + 6

    def token(self) -> tuple[str, int, int]:
        """Next token as (kind, start, end); kind is a punctuation char, 'str', 'scalar' or 'eof'."""
        self._skip_ws()
        text, pos = self.text, self.pos
        if pos >= len(text):
            return "eof", pos, pos
        ch = text[pos]
        if ch in "{}[],:":
            self.pos = pos + 1
            return ch, pos, pos + 1
        if ch == '"':
            end = self._string_end(pos)
            self.pos = end
            return "str", pos, end
        if ch in "tfn":
            for word in ("true", "false", "null"):
                if text.startswith(word, pos):
                    end = pos + len(word)
                    if end >= len(text) or text[end] in _DELIMS:
                        self.pos = end
                        return "scalar", pos, end
            raise self._invalid_value(pos)
        if ch == "-" or "0" <= ch <= "9":
            found = _NUMBER.match(text, pos)
            if found is not None:
                end = found.end()
                if end >= len(text) or text[end] in _DELIMS:
                    self.pos = end
                    return "scalar", pos, end
        raise self._invalid_value(pos)

    # structure ----------------------------------------------------------------------------

    def _unexpected(self, start: int, end: int) -> _Unexpected:
        return _Unexpected(start, f"unexpected token {self.text[start:end]}")

    def value(self, path: tuple[int, ...] = (), target: tuple[int, ...] | None = None, at_key: bool = False):
        """Read one value; if ``target`` is inside it, return (start, end) of the target token."""
        kind, start, end = self.token()
        if kind in ("str", "scalar"):
            return (start, end) if path == target else None
        if kind == "{":
            if path == target:
                return start, end
            index = 0
            kind, start, end = self.token()
            if kind == "}":
                return None
            while True:
                if kind != "str":
                    raise self._unexpected(start, end)
                key_span = (start, end)
                kind, start, end = self.token()
                if kind != ":":
                    raise (
                        self._unexpected(start, end) if kind != "eof" else _Unexpected(None, "unexpected EOF")
                    )
                member = (*path, index)
                if at_key and member == target:
                    return key_span
                found = self.value(member, target, at_key)
                if found is not None:
                    return found
                index += 1
                kind, start, end = self.token()
                if kind == "}":
                    return None
                if kind != ",":
                    raise (
                        self._unexpected(start, end) if kind != "eof" else _Unexpected(None, "unexpected EOF")
                    )
                kind, start, end = self.token()
                if kind == "eof":
                    raise _Unexpected(None, "unexpected EOF")
        if kind == "[":
            if path == target:
                return start, end
            index = 0
            save = self.pos
            kind, start, end = self.token()
            if kind == "]":
                return None
            self.pos = save
            while True:
                found = self.value((*path, index), target, at_key)
                if found is not None:
                    return found
                index += 1
                kind, start, end = self.token()
                if kind == "]":
                    return None
                if kind != ",":
                    raise (
                        self._unexpected(start, end) if kind != "eof" else _Unexpected(None, "unexpected EOF")
                    )
        if kind == "eof":
            raise _Unexpected(None, "unexpected EOF")
        raise self._unexpected(start, end)


def _format(text: str, pos: int | None, message: str, syntax: bool) -> str:
    if pos is None:
        return f"proto: {message}"
    line, col = line_col(text, pos)
    prefix = "syntax error " if syntax else ""
    return f"proto: {prefix}(line {line}:{col}): {message}"


def syntax_error(text: str) -> DecodeError:
    """The Go-style error for a text that is not one JSON object (best effort)."""
    scanner = Scanner(text)
    try:
        kind, start, end = scanner.token()
        if kind != "{":
            return DecodeError(_format(text, start, f"unexpected token {text[start:end]}", True))
        scanner.pos = start
        scanner.value()
        kind, start, end = scanner.token()
        if kind != "eof":
            return DecodeError(_format(text, start, f"unexpected token {text[start:end]}", True))
    except _Unexpected as exc:
        return DecodeError(_format(text, exc.pos, exc.text, exc.pos is not None))
    return DecodeError("proto: syntax error (line 1:1): invalid JSON")


def locate(text: str, path: tuple[int, ...], at_key: bool) -> tuple[int, str]:
    """Position and raw text of the key or value token at ``path`` (member/element indexes)."""
    scanner = Scanner(text)
    try:
        span = scanner.value((), path, at_key)
    except _Unexpected:
        span = None
    if span is None:
        return 0, ""
    return span[0], text[span[0] : span[1]]


def semantic_error(
    text: str, path: tuple[int, ...], at_key: bool, template: str, syntax: bool, unknown: bool
):
    """Build the DecodeError for a problem at ``path``; ``{raw}`` in the template is the raw token."""
    pos, raw = locate(text, path, at_key)
    return DecodeError(_format(text, pos, template.format(raw=raw), syntax), unknown=unknown)
