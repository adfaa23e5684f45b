"""IP address and prefix parsing with the rules and error texts of Go's ``net/netip``.

Hubble validates ``--ip`` style filter values with ``netip.ParseAddr`` / ``netip.ParsePrefix``
and puts their error text into its own messages, so this module reproduces both the accepted
syntax (no leading zeros in IPv4, embedded IPv4 only in the last 32 bits, zones with ``%``) and
the messages, e.g. ``ParseAddr("300.1.1.1"): IPv4 field has value >255``.

Addresses are returned as ``(bit_length, integer_value, zone)`` tuples.
"""

from __future__ import annotations

from typing import NamedTuple

from hubblepy.gotext import go_quote


class GoAddr(NamedTuple):
    """A parsed address: 32 or 128 bits, its value as an integer, and an IPv6 zone (or "")."""

    bits: int
    value: int
    zone: str


class GoPrefix(NamedTuple):
    """A parsed prefix: the masked network value, the length and the address family."""

    bits: int
    network: int
    length: int


class AddrSyntaxError(ValueError):
    """Raised with the exact Go error text."""


def _addr_error(text: str, msg: str, at: str | None = None) -> AddrSyntaxError:
    suffix = f" (at {go_quote(at)})" if at is not None and at != "" else ""
    return AddrSyntaxError(f"ParseAddr({go_quote(text)}): {msg}{suffix}")


def _ipv4_fields(text: str, part: str) -> int:
    """Parse dotted-quad ``part`` (a slice of ``text``) into a 32-bit integer."""
    value = 0
    octet = 0
    digits = 0
    dots = 0
    n = len(part)
    for i, ch in enumerate(part):
        if "0" <= ch <= "9":
            if digits == 1 and octet == 0:
                raise _addr_error(text, "IPv4 field has octet with leading zero")
            octet = octet * 10 + (ord(ch) - 48)
            digits += 1
            if octet > 255:
                raise _addr_error(text, "IPv4 field has value >255")
        elif ch == ".":
            if i == 0 or i == n - 1 or part[i - 1] == ".":
                raise _addr_error(text, "IPv4 field must have at least one digit", part[i:])
            if dots == 3:
                raise _addr_error(text, "IPv4 address too long")
            value = (value << 8) | octet
            dots += 1
            octet = 0
            digits = 0
        else:
            raise _addr_error(text, "unexpected character", part[i:])
    if dots < 3:
        raise _addr_error(text, "IPv4 address too short")
    return (value << 8) | octet


_HEX = {c: int(c, 16) for c in "0123456789abcdefABCDEF"}


def _parse_ipv6(text: str) -> GoAddr:
    s = text
    zone = ""
    pct = s.find("%")
    if pct != -1:
        s, zone = s[:pct], s[pct + 1 :]
        if zone == "":
            raise _addr_error(text, "zone must be a non-empty string")
    groups: list[int] = []  # 16-bit groups, 8 in total once expanded
    ellipsis = -1  # index into groups where "::" was found
    if len(s) >= 2 and s[0] == ":" and s[1] == ":":
        ellipsis = 0
        s = s[2:]
        if s == "":
            return GoAddr(128, 0, zone)
    while len(groups) < 8:
        off = 0
        acc = 0
        while off < len(s):
            digit = _HEX.get(s[off])
            if digit is None:
                break
            if off > 3:
                raise _addr_error(text, "each group must have 4 or less digits", s)
            acc = (acc << 4) + digit
            off += 1
        if off == 0:
            raise _addr_error(text, "each colon-separated field must have at least one digit", s)
        if off < len(s) and s[off] == ".":
            if ellipsis < 0 and len(groups) != 6:
                raise _addr_error(
                    text, "embedded IPv4 address must replace the final 2 fields of the address", s
                )
            if len(groups) + 2 > 8:
                raise _addr_error(
                    text, "too many hex fields to fit an embedded IPv4 at the end of the address", s
                )
            v4 = _ipv4_fields(text, s)
            groups.append(v4 >> 16)
            groups.append(v4 & 0xFFFF)
            s = ""
            break
        groups.append(acc)
        s = s[off:]
        if s == "":
            break
        if s[0] != ":":
            raise _addr_error(text, "unexpected character, want colon", s)
        if len(s) == 1:
            raise _addr_error(text, "colon must be followed by more characters", s)
        s = s[1:]
        if s[0] == ":":
            if ellipsis >= 0:
                raise _addr_error(text, "multiple :: in address", s)
            ellipsis = len(groups)
            s = s[1:]
            if s == "":
                break
    if s != "":
        raise _addr_error(text, "trailing garbage after address", s)
    if len(groups) < 8:
        if ellipsis < 0:
            raise _addr_error(text, "address string too short")
        groups = groups[:ellipsis] + [0] * (8 - len(groups)) + groups[ellipsis:]
    elif ellipsis >= 0:
        raise _addr_error(text, "the :: must expand to at least one field of zeros", s)
    value = 0
    for g in groups:
        value = (value << 16) | g
    return GoAddr(128, value, zone)


def parse_addr(text: str) -> GoAddr:
    """Parse like Go ``netip.ParseAddr``; raise :class:`AddrSyntaxError` with Go's message."""
    for ch in text:
        if ch == ".":
            return GoAddr(32, _ipv4_fields(text, text), "")
        if ch == ":":
            return _parse_ipv6(text)
        if ch == "%":
            raise _addr_error(text, "missing IPv6 address")
    raise _addr_error(text, "unable to parse IP")


def parse_prefix(text: str) -> GoPrefix:
    """Parse like Go ``netip.ParsePrefix``; raise :class:`AddrSyntaxError` with Go's message."""

    def fail(msg: str) -> AddrSyntaxError:
        return AddrSyntaxError(f"netip.ParsePrefix({go_quote(text)}): {msg}")

    slash = text.rfind("/")
    if slash < 0:
        raise fail("no '/'")
    try:
        addr = parse_addr(text[:slash])
    except AddrSyntaxError as err:
        raise fail(str(err)) from None
    if addr.bits == 128 and addr.zone:
        raise fail("IPv6 zones cannot be present in a prefix")
    bits_text = text[slash + 1 :]
    bad_bits = fail("bad bits after slash: " + go_quote(bits_text))
    if len(bits_text) > 1 and not ("1" <= bits_text[0] <= "9"):
        raise bad_bits
    if bits_text == "" or not bits_text.isascii() or not bits_text.isdigit():
        raise bad_bits
    length = int(bits_text)
    if length > addr.bits:
        raise fail("prefix length out of range")
    host_bits = addr.bits - length
    network = (addr.value >> host_bits) << host_bits
    return GoPrefix(addr.bits, network, length)


def prefix_contains(prefix: GoPrefix, addr: GoAddr) -> bool:
    """Go ``Prefix.Contains``: same family, no zone, and the leading bits are equal."""
    if addr.bits != prefix.bits or addr.zone:
        return False
    host_bits = prefix.bits - prefix.length
    return (addr.value >> host_bits) << host_bits == prefix.network
