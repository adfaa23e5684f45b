"""Raw FlowFilters: decode ``--allowlist``/``--denylist`` JSON, and print ``--print-raw-filters`` YAML.

Decoding follows what upstream does with each raw value: a Go ``encoding/json`` stream decoder reads
JSON values one after another (so ``{...}{...}`` gives two filters and an empty string gives none),
and each value is handed to protobuf-JSON (protojson) decoding of ``flow.FlowFilter`` (done by
:func:`hubblepy.codec.parse_message`). Both stages
keep upstream's error texts: ``unexpected EOF``, ``invalid character 'x' looking for beginning of
value``, ``proto: syntax error (line 1:1): unexpected token [``, ``proto: (line 1:2): unknown field
"bogus"``, ``proto: (line 1:12): invalid value for enum field verdict: "X"``.

The decoded filters are canonical FlowFilter dicts: proto field names in declaration order, enum
names (unknown numbers stay ints), 64-bit integers as strings, defaults left out, and present
messages kept even when empty.

Printing uses Go's JSON rules (compact, ``<``, ``>``, ``&``, U+2028 and U+2029 escaped) inside the
YAML that upstream's ``yaml.v3`` produces: ``allowlist:``/``denylist:`` with 4-space indented
single-quoted items, or ``{}`` when both lists are empty.
"""

from __future__ import annotations

from hubblepy.cli.timeparse import go_quote
from hubblepy.codec import DecodeError, encode, parse_message


class RawFilterError(ValueError):
    """A raw filter that does not decode; the text is upstream's message."""


# ---------------------------------------------------------------------------------------------
# Stage 1: Go encoding/json stream scanning (find where each JSON value ends).
# ---------------------------------------------------------------------------------------------

_WHITESPACE = b" \t\r\n"


def _quote_byte(byte: int) -> str:
    """Go's encoding/json ``quoteChar``: a byte shown as a quoted character."""
    if byte == 0x27:
        return "'\\''"
    if byte == 0x22:
        return "'\"'"
    return "'" + go_quote(chr(byte))[1:-1] + "'"


class _GoJSONScanner:
    """Finds the end of one JSON value, raising Go's syntax-error texts."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def _error(self, pos: int, context: str) -> RawFilterError:
        if pos >= len(self.data):
            return RawFilterError("unexpected EOF")
        return RawFilterError(f"invalid character {_quote_byte(self.data[pos])} {context}")

    def skip_space(self, pos: int) -> int:
        data = self.data
        while pos < len(data) and data[pos] in _WHITESPACE:
            pos += 1
        return pos

    def value(self, pos: int) -> int:
        """Scan one value starting at ``pos`` (no leading space); return the end offset."""
        data = self.data
        if pos >= len(data):
            raise self._error(pos, "looking for beginning of value")
        ch = data[pos]
        if ch == 0x7B:  # {
            return self._object(pos + 1)
        if ch == 0x5B:  # [
            return self._array(pos + 1)
        if ch == 0x22:
            return self._string(pos + 1)
        if ch == 0x2D or 0x30 <= ch <= 0x39:
            return self._number(pos)
        for word in (b"true", b"false", b"null"):
            if ch == word[0]:
                return self._literal(pos, word)
        raise self._error(pos, "looking for beginning of value")

    def _object(self, pos: int) -> int:
        data = self.data
        pos = self.skip_space(pos)
        if pos < len(data) and data[pos] == 0x7D:
            return pos + 1
        while True:
            if pos >= len(data) or data[pos] != 0x22:
                raise self._error(pos, "looking for beginning of object key string")
            pos = self.skip_space(self._string(pos + 1))
            if pos >= len(data) or data[pos] != 0x3A:
                raise self._error(pos, "after object key")
            pos = self.skip_space(self.value(self.skip_space(pos + 1)))
            if pos < len(data) and data[pos] == 0x2C:
                pos = self.skip_space(pos + 1)
                continue
            if pos < len(data) and data[pos] == 0x7D:
                return pos + 1
            raise self._error(pos, "after object key:value pair")

    def _array(self, pos: int) -> int:
        data = self.data
        pos = self.skip_space(pos)
        if pos < len(data) and data[pos] == 0x5D:
            return pos + 1
        while True:
            pos = self.skip_space(self.value(pos))
            if pos < len(data) and data[pos] == 0x2C:
                pos = self.skip_space(pos + 1)
                continue
            if pos < len(data) and data[pos] == 0x5D:
                return pos + 1
            raise self._error(pos, "after array element")

    def _string(self, pos: int) -> int:
        data = self.data
        while True:
            if pos >= len(data):
                raise self._error(pos, "in string literal")
            ch = data[pos]
            if ch == 0x22:
                return pos + 1
            if ch == 0x5C:
                pos += 1
                if pos >= len(data):
                    raise self._error(pos, "in string escape code")
                esc = data[pos]
                if esc == 0x75:  # u
                    for k in range(1, 5):
                        if pos + k >= len(data) or data[pos + k] not in b"0123456789abcdefABCDEF":
                            raise self._error(pos + k, "in \\u hexadecimal character escape")
                    pos += 5
                    continue
                if esc not in b'"\\/bfnrt':
                    raise self._error(pos, "in string escape code")
                pos += 1
                continue
            if ch < 0x20:
                raise self._error(pos, "in string literal")
            pos += 1

    def _number(self, pos: int) -> int:
        data = self.data

        def digit(p: int) -> bool:
            return p < len(data) and 0x30 <= data[p] <= 0x39

        if data[pos] == 0x2D:
            pos += 1
            if not digit(pos):
                raise self._error(pos, "in numeric literal")
        if data[pos] == 0x30:
            pos += 1
        else:
            while digit(pos):
                pos += 1
        if pos < len(data) and data[pos] == 0x2E:
            pos += 1
            if not digit(pos):
                raise self._error(pos, "after decimal point in numeric literal")
            while digit(pos):
                pos += 1
        if pos < len(data) and data[pos] in b"eE":
            pos += 1
            if pos < len(data) and data[pos] in b"+-":
                pos += 1
            if not digit(pos):
                raise self._error(pos, "in exponent of numeric literal")
            while digit(pos):
                pos += 1
        return pos

    def _literal(self, pos: int, word: bytes) -> int:
        for k in range(1, len(word)):
            if pos + k >= len(self.data) or self.data[pos + k] != word[k]:
                expected = chr(word[k])
                raise self._error(pos + k, f"in literal {word.decode()} (expecting '{expected}')")
        return pos + len(word)


def split_json_values(text: str) -> list[bytes]:
    """Split a raw argument into its back-to-back JSON values (Go json.Decoder semantics)."""
    data = text.encode("utf-8", "surrogateescape")
    scanner = _GoJSONScanner(data)
    values = []
    pos = scanner.skip_space(0)
    while pos < len(data):
        end = scanner.value(pos)
        values.append(data[pos:end])
        pos = scanner.skip_space(end)
    return values


def decode_flow_filters(raw: str) -> list[dict]:
    """Decode one raw ``--allowlist``/``--denylist`` argument into canonical FlowFilter dicts.

    Raises :class:`RawFilterError` with upstream's text: ``failed to decode '<raw>': <reason>``.
    """
    try:
        chunks = split_json_values(raw)
        return [parse_message(chunk, "flow.FlowFilter") for chunk in chunks]
    except (RawFilterError, DecodeError) as exc:
        raise RawFilterError(f"failed to decode '{raw}': {exc}") from None


# ---------------------------------------------------------------------------------------------
# Printing: Go JSON inside yaml.v3 YAML.
# ---------------------------------------------------------------------------------------------


def go_json(value: object) -> str:
    """Compact JSON as Go's ``json.Marshal`` writes it (HTML-escaped)."""
    return encode(value).decode("utf-8")


def _yaml_printable(ch: str) -> bool:
    code = ord(ch)
    if code == 0x0A or 0x20 <= code <= 0x7E:
        return True
    if 0xA0 <= code <= 0xD7FF:
        return True
    return 0xE000 <= code <= 0xFFFD and code != 0xFEFF


_YAML_DOUBLE_ESCAPES = {
    "\0": "\\0",
    "\a": "\\a",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\v": "\\v",
    "\f": "\\f",
    "\r": "\\r",
    "\x1b": "\\e",
    '"': '\\"',
    "\\": "\\\\",
    "\x85": "\\N",
    "\u2028": "\\L",
    "\u2029": "\\P",
}


def yaml_quote(text: str) -> str:
    """Quote a string that starts with ``{`` the way yaml.v3 does (single quotes when possible)."""
    if all(_yaml_printable(ch) and ch != "\n" for ch in text):
        return "'" + text.replace("'", "''") + "'"
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in _YAML_DOUBLE_ESCAPES:
            out.append(_YAML_DOUBLE_ESCAPES[ch])
        elif _yaml_printable(ch):
            out.append(ch)
        elif code <= 0xFF:
            out.append(f"\\x{code:02X}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04X}")
        else:
            out.append(f"\\U{code:08X}")
    out.append('"')
    return "".join(out)


def render_raw_filters(allow: list[dict], deny: list[dict]) -> str:
    """The exact ``--print-raw-filters`` output for the given allow and deny lists."""
    if not allow and not deny:
        return "{}\n"
    lines = []
    for key, filters in (("allowlist", allow), ("denylist", deny)):
        if not filters:
            continue
        lines.append(f"{key}:")
        lines.extend(f"    - {yaml_quote(go_json(flow_filter))}" for flow_filter in filters)
    return "\n".join(lines) + "\n"
