"""Security identities: reserved names and Go-syntax numbers, as ``--identity`` accepts them."""

from __future__ import annotations

from hubblepy import identities
from hubblepy.filters.errors import FilterError
from hubblepy.gotext import go_parse_uint

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


def go_parse_uint_base0(text: str, bits: int) -> int | None:
    """Go ``strconv.ParseUint(text, 0, bits)`` (prefixes, octal, ``_`` between digits); None on error."""
    try:
        return go_parse_uint(text, 0, bits)
    except ValueError:
        return None


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
