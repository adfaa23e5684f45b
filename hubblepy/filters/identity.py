"""Security identities: reserved names and Go-syntax numbers, as ``--identity`` accepts them."""

from __future__ import annotations

import re

from hubblepy import identities
from hubblepy.filters.errors import FilterError

#: Reserved identity names accepted by ``--identity`` (case-sensitive) and their numbers.
#: ``unknown`` (0) is deliberately absent: upstream rejects it, while the number 0 is accepted.
RESERVED_IDENTITIES: dict[str, int] = {
    **identities.RESERVED_IDENTITIES,
    "overlay-to-encrypt": identities.IDENTITY_OVERLAY_TO_ENCRYPT,
}

# Upstream lists the names from its own table, where overlay-to-encrypt has no name string.
_EXPECTED_LIST = (
    "[host world unmanaged health init remote-node kube-apiserver ingress world-ipv4 world-ipv6 11]"
)

_DIGIT_RUNS = {
    2: re.compile(r"[01]+(?:_[01]+)*"),
    8: re.compile(r"[0-7]+(?:_[0-7]+)*"),
    10: re.compile(r"[0-9]+(?:_[0-9]+)*"),
    16: re.compile(r"[0-9a-fA-F]+(?:_[0-9a-fA-F]+)*"),
}


def go_parse_uint_base0(text: str, bits: int) -> int | None:
    """Parse like Go ``strconv.ParseUint(text, 0, bits)``; None on a syntax or range error.

    Accepts ``0x``/``0o``/``0b`` prefixes, a leading ``0`` for octal, and ``_`` between digits.
    """
    if text == "" or not text.isascii():
        return None
    base = 10
    digits = text
    prefixed = False
    lower = text[:2].lower()
    if lower in ("0x", "0o", "0b"):
        base = {"0x": 16, "0o": 8, "0b": 2}[lower]
        digits = text[2:]
        prefixed = True
    elif text[0] == "0" and len(text) > 1:
        base = 8
        digits = text[1:]
        prefixed = True
    if prefixed and digits.startswith("_"):
        digits = digits[1:]
    if not _DIGIT_RUNS[base].fullmatch(digits):
        return None
    value = int(digits.replace("_", ""), base)
    return value if value < (1 << bits) else None


def parse_identity(text: str) -> int:
    """Parse one ``--identity`` value: a reserved name or a Go-syntax number below 2**32.

    Raises :class:`FilterError` with upstream's message (the CLI adds the flag prefix).
    """
    if text in RESERVED_IDENTITIES:
        return RESERVED_IDENTITIES[text]
    value = go_parse_uint_base0(text, 32)
    if value is None:
        raise FilterError(f"invalid security identity, expected one of {_EXPECTED_LIST} or a numeric value")
    return value
