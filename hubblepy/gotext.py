"""Go's string quoting (``strconv.Quote`` / ``%q``), shared by every place that reproduces upstream text."""

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
