"""Go's string quoting (``strconv.Quote`` / ``%q``) and ``strconv.ParseUint``, shared by every place that
reproduces upstream text."""

from __future__ import annotations

_SHORT_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    "\\": "\\\\",
}


def _escape_char(ch: str, quote: str) -> str:
    if ch == quote:
        return "\\" + ch
    short = _SHORT_ESCAPES.get(ch)
    if short is not None:
        return short
    if ch == " " or (ch.isprintable() and ch != "\x7f"):
        return ch
    code = ord(ch)
    if code < 0x80:
        return f"\\x{code:02x}"
    if 0xD800 <= code <= 0xDFFF:  # a lone surrogate stands for an invalid UTF-8 byte
        return "\\ufffd" if code < 0xDC80 else f"\\x{code - 0xDC00:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def go_quote(text: str) -> str:
    """Quote like Go ``strconv.Quote``: double quotes, Go escapes for unprintable characters."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    return '"' + "".join(_escape_char(ch, '"') for ch in text) + '"'


def go_quote_rune(ch: str) -> str:
    """Quote one character like Go ``strconv.QuoteRune`` (``%q`` of a rune): ``' '``, ``'\\''``."""
    return "'" + _escape_char(ch, "'") + "'"


def go_parse_uint(text: str, base: int, bits: int, func: str = "ParseUint") -> int:
    """Go ``strconv.ParseUint`` (base 0 or 10), raising ValueError with Go's message."""
    syntax = ValueError(f"strconv.{func}: parsing {go_quote(text)}: invalid syntax")
    digits = text
    radix = base
    if base == 0:
        radix = 10
        lowered = text.lower()
        if lowered.startswith("0x"):
            radix, digits = 16, text[2:]
        elif lowered.startswith("0o"):
            radix, digits = 8, text[2:]
        elif lowered.startswith("0b"):
            radix, digits = 2, text[2:]
        elif text.startswith("0") and len(text) > 1:
            radix, digits = 8, text[1:]
        if "_" in digits or "_" in text:
            if not _underscores_ok(text):
                raise syntax
            digits = digits.replace("_", "")
    if not digits:
        raise syntax
    value = 0
    for ch in digits:
        if "0" <= ch <= "9":
            d = ord(ch) - 48
        elif "a" <= ch.lower() <= "z":
            d = ord(ch.lower()) - 87
        else:
            raise syntax
        if d >= radix:
            raise syntax
        value = value * radix + d
    if value >= 1 << bits:
        raise ValueError(f"strconv.{func}: parsing {go_quote(text)}: value out of range")
    return value


def _underscores_ok(text: str) -> bool:
    """Go's rule for ``_`` in base-0 literals: only between digits or after a base prefix."""
    saw = "^"
    i = 0
    hexadecimal = False
    if len(text) >= 2 and text[0] == "0" and text[1].lower() in "box":
        hexadecimal = text[1].lower() == "x"
        i = 2
        saw = "0"
    while i < len(text):
        ch = text[i]
        if "0" <= ch <= "9" or (hexadecimal and "a" <= ch.lower() <= "f"):
            saw = "0"
        elif ch == "_":
            if saw != "0":
                return False
            saw = "_"
        else:
            if saw == "_":
                return False
            saw = "!"
        i += 1
    return saw != "_"
