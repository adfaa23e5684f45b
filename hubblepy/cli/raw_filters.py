"""Raw FlowFilters: decode ``--allowlist``/``--denylist`` JSON, and print ``--print-raw-filters`` YAML.

Decoding follows what upstream does with each raw value: a Go ``encoding/json`` stream decoder reads
JSON values one after another (so ``{...}{...}`` gives two filters and an empty string gives none),
and each value is handed to protobuf-JSON (protojson) decoding of ``flow.FlowFilter``. Both stages
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

import re
from decimal import Decimal, InvalidOperation

import orjson
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from hubblepy.api.flow import flow_pb2
from hubblepy.cli.timeparse import go_quote


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


# ---------------------------------------------------------------------------------------------
# Stage 2: protojson decoding of one JSON value into a canonical message dict.
# ---------------------------------------------------------------------------------------------

_TOKEN_RE = re.compile(
    rb'\s*(?:(?P<punct>[{}\[\]:,])|(?P<string>"(?:[^"\\]|\\.)*")'
    rb"|(?P<number>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)|(?P<literal>true|false|null))"
)
_NUMBER_RE = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")

_KIND_NAMES = {
    FieldDescriptor.TYPE_BOOL: "bool",
    FieldDescriptor.TYPE_INT32: "int32",
    FieldDescriptor.TYPE_UINT32: "uint32",
    FieldDescriptor.TYPE_INT64: "int64",
    FieldDescriptor.TYPE_UINT64: "uint64",
    FieldDescriptor.TYPE_STRING: "string",
    FieldDescriptor.TYPE_ENUM: "enum",
    FieldDescriptor.TYPE_MESSAGE: "message",
}
_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(1 << 31), (1 << 31) - 1),
    FieldDescriptor.TYPE_UINT32: (0, (1 << 32) - 1),
    FieldDescriptor.TYPE_INT64: (-(1 << 63), (1 << 63) - 1),
    FieldDescriptor.TYPE_UINT64: (0, (1 << 64) - 1),
}


class _Token:
    __slots__ = ("kind", "raw", "pos")

    def __init__(self, kind: str, raw: bytes, pos: int) -> None:
        self.kind = kind
        self.raw = raw
        self.pos = pos

    def text(self) -> str:
        return self.raw.decode("utf-8", "surrogateescape")

    def string_value(self) -> str:
        return orjson.loads(self.raw)


class _ProtoJSONDecoder:
    """A small protojson decoder for one (syntactically valid) JSON value."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.tokens: list[_Token] = []
        pos = 0
        while True:
            match = _TOKEN_RE.match(data, pos)
            if match is None:
                break
            kind = match.lastgroup or "punct"
            start = match.start(kind)
            self.tokens.append(_Token(kind, match.group(kind), start))
            pos = match.end()
        self.index = 0

    def _position(self, pos: int) -> str:
        before = self.data[:pos]
        line = before.count(b"\n") + 1
        last = before.rfind(b"\n")
        column = len(before[last + 1 :].decode("utf-8", "replace")) + 1
        return f"(line {line}:{column})"

    def error(self, token: _Token, message: str) -> RawFilterError:
        return RawFilterError(f"proto: {self._position(token.pos)}: {message}")

    def syntax_error(self, token: _Token) -> RawFilterError:
        return RawFilterError(
            f"proto: syntax error {self._position(token.pos)}: unexpected token {token.text()}"
        )

    def read(self) -> _Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def peek(self) -> _Token:
        return self.tokens[self.index]

    def message(self, descriptor: Descriptor) -> dict:
        token = self.read()
        if token.raw != b"{":
            raise self.syntax_error(token)
        values: dict[str, object] = {}
        seen: set[int] = set()
        while True:
            token = self.read()
            if token.raw == b"}":
                break
            if token.raw == b",":
                token = self.read()
            name = token.string_value()
            field = descriptor.fields_by_camelcase_name.get(name) or descriptor.fields_by_name.get(name)
            if field is None:
                raise self.error(token, f"unknown field {token.text()}")
            if field.number in seen:
                raise self.error(token, f"duplicate field {token.text()}")
            seen.add(field.number)
            self.read()  # the colon
            if self.peek().raw == b"null":
                self.read()
                continue
            if field.is_repeated:
                values[field.name] = self.list(field)
            elif field.type == FieldDescriptor.TYPE_MESSAGE:
                values[field.name] = self.message(field.message_type)
            else:
                values[field.name] = self.scalar(field)
        return _canonical(descriptor, values)

    def list(self, field: FieldDescriptor) -> list:
        token = self.read()
        if token.raw != b"[":
            raise self.syntax_error(token)
        items = []
        while True:
            if self.peek().raw == b"]":
                self.read()
                return items
            if self.peek().raw == b",":
                self.read()
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                items.append(self.message(field.message_type))
            else:
                items.append(self.scalar(field))

    def scalar(self, field: FieldDescriptor) -> object:
        token = self.read()
        kind = field.type
        if kind == FieldDescriptor.TYPE_BOOL and token.kind == "literal" and token.raw != b"null":
            return token.raw == b"true"
        if kind == FieldDescriptor.TYPE_STRING and token.kind == "string":
            return token.string_value()
        if kind in _INT_RANGES:
            number = _integer(token, *_INT_RANGES[kind])
            if number is not None:
                return (
                    str(number)
                    if kind in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64)
                    else number
                )
        if kind == FieldDescriptor.TYPE_ENUM:
            if token.kind == "string":
                value = field.enum_type.values_by_name.get(token.string_value())
                if value is not None:
                    return value.name
            elif token.kind == "number":
                number = _integer(token, -(1 << 31), (1 << 31) - 1, allow_string=False)
                if number is not None:
                    known = field.enum_type.values_by_number.get(number)
                    return known.name if known is not None else number
        kind_name = _KIND_NAMES.get(kind, "value")
        raise self.error(token, f"invalid value for {kind_name} field {field.json_name}: {token.text()}")


def _integer(token: _Token, low: int, high: int, allow_string: bool = True) -> int | None:
    if token.kind == "number":
        text = token.text()
    elif token.kind == "string" and allow_string:
        text = token.string_value()
        if not _NUMBER_RE.fullmatch(text):
            return None
    else:
        return None
    try:
        number = Decimal(text)
    except InvalidOperation:
        return None
    if number != number.to_integral_value():
        return None
    value = int(number)
    return value if low <= value <= high else None


def _is_default(field: FieldDescriptor, value: object) -> bool:
    if field.is_repeated:
        return not value
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return False
    if field.type == FieldDescriptor.TYPE_ENUM:
        return value == field.enum_type.values_by_number[0].name or value == 0
    if field.type in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64):
        return value == "0"
    if field.type == FieldDescriptor.TYPE_STRING:
        return value == ""
    return value is False or value == 0


def _canonical(descriptor: Descriptor, values: dict) -> dict:
    return {
        f.name: values[f.name]
        for f in descriptor.fields
        if f.name in values and not _is_default(f, values[f.name])
    }


def decode_flow_filters(raw: str) -> list[dict]:
    """Decode one raw ``--allowlist``/``--denylist`` argument into canonical FlowFilter dicts.

    Raises :class:`RawFilterError` with upstream's text: ``failed to decode '<raw>': <reason>``.
    """
    try:
        chunks = split_json_values(raw)
        return [_ProtoJSONDecoder(chunk).message(flow_pb2.FlowFilter.DESCRIPTOR) for chunk in chunks]
    except RawFilterError as exc:
        raise RawFilterError(f"failed to decode '{raw}': {exc}") from None


# ---------------------------------------------------------------------------------------------
# Printing: Go JSON inside yaml.v3 YAML.
# ---------------------------------------------------------------------------------------------

_GO_HTML_ESCAPES = {
    ord("<"): "\\u003c",
    ord(">"): "\\u003e",
    ord("&"): "\\u0026",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


def go_json(value: object) -> str:
    """Compact JSON as Go's ``json.Marshal`` writes it (HTML-escaped)."""
    return orjson.dumps(value).decode("utf-8").translate(_GO_HTML_ESCAPES)


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
