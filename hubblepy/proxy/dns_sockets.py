"""UDP sockets of the transparent DNS proxy (IPv4).

* the listener: one unconnected socket bound to ``0.0.0.0:<port>`` with IP_TRANSPARENT and
  IP_RECVORIGDSTADDR; the datapath hands it every redirected datagram (bpf_sk_assign) and the
  ancillary data of each one tells the original destination (the DNS server the client asked);
* reply sockets: answers must reach the client from the address it asked (``server ip:53``), so
  they are sent from a transparent socket bound to that address (one per server address, kept);
* upstream sockets: bound to the client's address (IP_TRANSPARENT, any port), marked with
  ``MARK_FROM_PROXY`` and connected to the original server, so the server sees the real client
  and the datapath neither redirects nor re-judges the proxy's own traffic.
"""

from __future__ import annotations

import socket
import struct

IP_TRANSPARENT = getattr(socket, "IP_TRANSPARENT", 19)
IP_RECVORIGDSTADDR = getattr(socket, "IP_RECVORIGDSTADDR", 20)
IP_ORIGDSTADDR = IP_RECVORIGDSTADDR  # the control message's type has the option's number
SO_MARK = getattr(socket, "SO_MARK", 36)
ANCILLARY_SIZE = socket.CMSG_SPACE(16)  # one struct sockaddr_in
_SOCKADDR_IN = struct.Struct("!2xH4s")  # family (host order, skipped), port, address


def udp_listener(host: str, port: int, transparent: bool = True) -> socket.socket:
    """The proxy's non-blocking UDP socket: sees datagrams to anyone, with their original destination."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        if transparent:
            sock.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
        sock.setsockopt(socket.SOL_IP, IP_RECVORIGDSTADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.bind((host, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def original_destination(ancdata: list[tuple[int, int, bytes]]) -> tuple[str, int] | None:
    """(ip, port) from recvmsg's IP_ORIGDSTADDR control message, or None."""
    for level, kind, data in ancdata:
        if level == socket.SOL_IP and kind == IP_ORIGDSTADDR and len(data) >= _SOCKADDR_IN.size:
            port, raw = _SOCKADDR_IN.unpack_from(data)
            return socket.inet_ntoa(raw), port
    return None


def reply_socket(address: tuple[str, int], mark: int = 0) -> socket.socket:
    """A non-blocking socket that sends from ``address`` (a non-local one: IP_TRANSPARENT)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if mark:
            sock.setsockopt(socket.SOL_SOCKET, SO_MARK, mark)
        sock.bind(address)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def upstream_udp_socket(client_ip: str | None, server: tuple[str, int], mark: int = 0) -> socket.socket:
    """A non-blocking UDP socket connected to ``server``, bound to ``client_ip`` when given."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        if mark:
            sock.setsockopt(socket.SOL_SOCKET, SO_MARK, mark)
        if client_ip is not None:
            sock.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
            sock.bind((client_ip, 0))
        sock.connect(server)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock
