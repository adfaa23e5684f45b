"""Start-up checks shared by `hubble agent` and `hubble-relay`: addresses, peer lists, numbers.

Each check raises ``ValueError`` with the one line the command prints before exiting 1, so a bad
flag never starts a half-configured server (a port above 65535 used to make gRPC pick a random one,
a negative rate ran unthrottled, ``=:`` became a node named ``:``). Port errors use the words of Go's
net package, as upstream's binaries print them.
"""

from __future__ import annotations

import math

MAX_PORT = 65535


def split_host_port(address: str) -> tuple[str, str]:
    """``host:port`` / ``[v6]:port`` / ``:port`` -> (host, port); ValueError when there is no port."""
    if address.startswith("["):
        end = address.find("]")
        if end < 0:
            raise ValueError(f"address {address}: missing ']' in address")
        host, rest = address[1:end], address[end + 1 :]
        if not rest.startswith(":"):
            raise ValueError(f"address {address}: missing port in address")
        return host, rest[1:]
    host, sep, port = address.rpartition(":")
    if not sep:
        raise ValueError(f"address {address}: missing port in address")
    if ":" in host:
        raise ValueError(f"address {address}: too many colons in address")
    return host, port


def parse_port(address: str, port: str, allow_zero: bool) -> int:
    """The port number of ``address``; ValueError for anything but 0/1..65535 in decimal."""
    if (
        not port.isascii()
        or not port.isdigit()
        or int(port) > MAX_PORT
        or (int(port) == 0 and not allow_zero)
    ):
        raise ValueError(f"address {address}: invalid port")
    return int(port)


def check_listen_address(flag: str, address: str) -> None:
    """A TCP listen address: ``[HOST]:PORT`` with PORT 0-65535 (a bare host gets the default port)."""
    if not address or address.startswith(("unix:", "unix-abstract:")):
        return
    if ":" not in address.strip("[]") and not address.startswith("["):
        return  # a bare host: the default port is added
    try:
        _, port = split_host_port(address)
        parse_port(address, port, allow_zero=True)
    except ValueError as exc:
        raise ValueError(f'invalid {flag} "{address}": listen tcp: {exc}') from None


def check_dial_address(flag: str, address: str) -> None:
    """An address to dial: ``HOST:PORT`` (optionally ``dns:///``), PORT 1-65535; ``unix:`` paths pass."""
    if address.startswith(("unix:", "unix-abstract:")):
        if not address.partition(":")[2].lstrip("/"):
            raise ValueError(f'invalid {flag} "{address}": empty socket path')
        return
    target = address.removeprefix("dns:///")
    try:
        host, port = split_host_port(target)
        if not host:
            raise ValueError(f"address {target}: missing host")
        parse_port(target, port, allow_zero=False)
    except ValueError as exc:
        raise ValueError(f'invalid {flag} "{address}": {exc}') from None


def parse_peer_list(flag: str, text: str, bare_is_name: bool) -> list[tuple[str, str]]:
    """``[NAME=]HOST:PORT,...`` -> [(name, address)]; every entry must be complete.

    A bare address gets itself as name when ``bare_is_name``, else an empty name (the caller learns
    it later). Empty entries, empty names before ``=`` and bad addresses are errors.
    """
    out: list[tuple[str, str]] = []
    if not text.strip():
        return out
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            raise ValueError(f'invalid {flag} "{text}": empty entry')
        name, sep, address = item.partition("=")
        if sep:
            name, address = name.strip(), address.strip()
            if not name:
                raise ValueError(f'invalid {flag} entry "{item}": empty node name')
        else:
            name, address = (item if bare_is_name else ""), item
        check_dial_address(flag, address)
        out.append((name, address))
    return out


def check_number(flag: str, value: float, minimum: float, what: str = "") -> None:
    """``value`` must be finite and at least ``minimum``."""
    if (isinstance(value, float) and not math.isfinite(value)) or value < minimum:
        shown = int(value) if isinstance(value, float) and value.is_integer() else value
        raise ValueError(f"invalid {flag} {shown}: {what or f'must be at least {minimum}'}")


def check_agent_flags(args: object) -> None:
    """The numeric and address flags of `hubble agent` (see :mod:`hubblepy.observer.agent`)."""
    check_listen_address("--listen-address", getattr(args, "listen_address", ""))
    check_number(
        "--rate", getattr(args, "rate", 0.0), 0, "must be 0 (as fast as possible) or a positive rate"
    )
    check_number("--max-workers", getattr(args, "max_workers", 1), 1)
    parse_peer_list("--peers", getattr(args, "peers", ""), bare_is_name=True)
    advertise = getattr(args, "advertise_address", "")
    if advertise:
        check_dial_address("--advertise-address", advertise)
