"""Sockets of the transparent proxy: the IP_TRANSPARENT listener and the client-address upstream socket."""

from __future__ import annotations

import socket

IP_TRANSPARENT = getattr(socket, "IP_TRANSPARENT", 19)
SO_MARK = getattr(socket, "SO_MARK", 36)


def from_proxy_mark() -> int:
    """The skb mark of the proxy's upstream packets (the datapath's MARK_FROM_PROXY)."""
    from hubblepy.datapath import layout

    for name in ("MARK_FROM_PROXY", "HP_MARK_FROM_PROXY"):
        if hasattr(layout, name):
            return int(getattr(layout, name))
    return 0x0A00


def listening_socket(host: str, port: int, transparent: bool = False, backlog: int = 1024) -> socket.socket:
    """A non-blocking TCP listener; with ``transparent`` it accepts connections addressed to anyone."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if transparent:
            sock.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def upstream_socket(client_ip: str | None, mark: int = 0) -> socket.socket:
    """A non-blocking TCP socket for the upstream connection.

    With ``client_ip`` it is bound to the client's address (IP_TRANSPARENT, port chosen by the kernel)
    so the server sees the real client; ``mark`` sets SO_MARK so the datapath lets it pass (from-proxy).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if mark:
            sock.setsockopt(socket.SOL_SOCKET, SO_MARK, mark)
        if client_ip is not None:
            sock.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
            sock.bind((client_ip, 0))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock
