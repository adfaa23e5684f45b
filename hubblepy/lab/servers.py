"""Small servers that lab pods run: ``python -m hubblepy.lab.servers KIND [options]``.

* ``http --port 8080 [--route /api/v1/orders ...]``: answers every method; 200 (POST: 201, created)
  with a small JSON body on the routes (all paths when none are given), 404 elsewhere. Request bodies
  (Content-Length or chunked) are read whole and their size is in the answer (``received``).
* ``tcp --port 5432``: a TCP echo server (stands in for postgres).
* ``https --port 443 --cert FILE --key FILE [--route ...]``: the HTTP server over TLS (a world
  host's server, with a certificate of the lab CA).
* ``dns --port 53 --zone-file FILE [--upstream IP:PORT]``: the cluster DNS (kube-dns) on UDP and TCP
  answering A queries for the names of FILE (a JSON object
  ``{"api.payments.svc.cluster.local": "10.244.0.11", ...}``, re-read when it changes, so recreated
  pods resolve to their new IP); NXDOMAIN for other names in ``cluster.local``. Names outside it are
  forwarded to ``--upstream`` over the client's transport, as CoreDNS's ``forward`` plugin does
  (SERVFAIL when it does not answer), or REFUSED without one. Clients find ``api`` and
  ``api.payments`` through their search domains.
* ``resolver --port 53 --hosts-file FILE``: the world's upstream resolver
  (:mod:`hubblepy.lab.worlddns`).

``--bind ADDRESS`` (repeatable) listens on those addresses instead of all (a world host's servers
listen on its own addresses only).

Each server runs until SIGTERM and logs nothing per request (the flows are the log).
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import signal
import socket
import socketserver
import ssl
import struct
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from hubblepy.lab.worlddns import WorldResolver

CLUSTER_DOMAIN = "cluster.local"


# -- HTTP ------------------------------------------------------------------------------------------
def _http_handler(routes: set[str]) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "hubblepy-lab"
        protocol_version = "HTTP/1.1"

        def _read_body(self) -> int:
            """Reads and drops the request body (Content-Length or chunked); returns its size."""
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                total = 0
                while True:
                    size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass  # trailers
                        return total
                    total += _drain(self.rfile, size)
                    self.rfile.readline()
            return _drain(self.rfile, int(self.headers.get("Content-Length") or 0))

        def _answer(self) -> None:
            received = self._read_body()
            path = self.path.split("?", 1)[0]
            ok = not routes or path in routes
            answer = {"path": path, "method": self.command, "ok": ok}
            if received:
                answer["received"] = received
            body = json.dumps(answer).encode() + b"\n"
            self.send_response((201 if self.command == "POST" else 200) if ok else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _answer

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

    return Handler


def _drain(stream, length: int) -> int:
    done = 0
    while done < length:
        chunk = stream.read(min(length - done, 1 << 16))
        if not chunk:
            break
        done += len(chunk)
    return done


class _TLSHTTPServer(http.server.ThreadingHTTPServer):
    """HTTPS: the TLS handshake runs in the request's thread, so a slow client blocks no one."""

    context: ssl.SSLContext

    def finish_request(self, request: Any, client_address: Any) -> None:
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return  # a failed handshake (e.g. a client that does not trust the lab CA)
        try:
            super().finish_request(tls, client_address)
        finally:
            tls.close()


def serve_http(
    port: int, routes: list[str], address: str = "0.0.0.0", tls: ssl.SSLContext | None = None
) -> socketserver.BaseServer:
    http.server.ThreadingHTTPServer.allow_reuse_address = True
    server: http.server.ThreadingHTTPServer
    if tls is None:
        server = http.server.ThreadingHTTPServer((address, port), _http_handler(set(routes)))
    else:
        server = _TLSHTTPServer((address, port), _http_handler(set(routes)))
        server.context = tls
    server.daemon_threads = True
    return server


# -- TCP echo --------------------------------------------------------------------------------------
class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


def serve_tcp(port: int, address: str = "0.0.0.0") -> socketserver.BaseServer:
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    server = socketserver.ThreadingTCPServer((address, port), _Echo)
    server.daemon_threads = True
    return server


# -- DNS -------------------------------------------------------------------------------------------
TYPE_A = 1
CLASS_IN = 1
RCODE_NXDOMAIN = 3
RCODE_REFUSED = 5
RCODE_FORMERR = 1
RCODE_SERVFAIL = 2


def _read_name(msg: bytes, offset: int) -> tuple[str, int]:
    labels: list[str] = []
    while True:
        length = msg[offset]
        if length == 0:
            return ".".join(labels), offset + 1
        if length & 0xC0:
            raise ValueError("compressed names are not expected in questions")
        labels.append(msg[offset + 1 : offset + 1 + length].decode("ascii", "replace"))
        offset += 1 + length


def dns_answer(query: bytes, zone: dict[str, str]) -> bytes | None:
    """The response to one DNS query message (None when it is too broken to answer)."""
    if len(query) < 12:
        return None
    qid, flags, qdcount = struct.unpack_from("!HHH", query)
    if flags & 0x8000:
        return None  # a response, not a query
    rd = flags & 0x0100
    try:
        if qdcount != 1:
            raise ValueError("one question expected")
        name, end = _read_name(query, 12)
        qtype, qclass = struct.unpack_from("!HH", query, end)
        end += 4
    except (ValueError, IndexError, struct.error):
        return struct.pack("!HHHHHH", qid, 0x8000 | rd | RCODE_FORMERR, 0, 0, 0, 0)
    question = query[12:end]
    key = name.lower().rstrip(".")
    answers = b""
    rcode = 0
    if key in zone:
        if qtype == TYPE_A and qclass == CLASS_IN:
            answers = b"\xc0\x0c" + struct.pack("!HHIH", TYPE_A, CLASS_IN, 5, 4) + socket.inet_aton(zone[key])
    elif key == CLUSTER_DOMAIN or key.endswith("." + CLUSTER_DOMAIN):
        rcode = RCODE_NXDOMAIN
    else:
        rcode = RCODE_REFUSED
    header = struct.pack("!HHHHHH", qid, 0x8000 | 0x0400 | rd | 0x0080 | rcode, 1, 1 if answers else 0, 0, 0)
    return header + question + answers


class ZoneFile:
    """A name -> IPv4 JSON file, re-read when its modification time changes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._mtime = -1.0
        self._zone: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self) -> dict[str, str]:
        try:
            mtime = os.stat(self.path).st_mtime
        except OSError:
            return self._zone
        if mtime != self._mtime:
            with self._lock:
                try:
                    with open(self.path) as fh:
                        data = json.load(fh)
                    self._zone = {str(k).lower().rstrip("."): str(v) for k, v in data.items()}
                    self._mtime = mtime
                except (OSError, ValueError, AttributeError):
                    pass
        return self._zone


def question_name(query: bytes) -> str | None:
    """The (lowercase, dotless) name of a query's single question, None when it is not readable."""
    if len(query) < 12:
        return None
    flags, qdcount = struct.unpack_from("!2xHH", query)
    if flags & 0x8000 or qdcount != 1:
        return None
    try:
        name, _ = _read_name(query, 12)
    except (ValueError, IndexError):
        return None
    return name.lower().rstrip(".")


def in_cluster(name: str) -> bool:
    return name == CLUSTER_DOMAIN or name.endswith("." + CLUSTER_DOMAIN)


UPSTREAM_TIMEOUT = 2.0


def forward(query: bytes, upstream: tuple[str, int], tcp: bool) -> bytes:
    """The upstream's reply to ``query`` (same transport as the client's); SERVFAIL if none comes."""
    try:
        if tcp:
            with socket.create_connection(upstream, timeout=UPSTREAM_TIMEOUT) as conn:
                conn.sendall(struct.pack("!H", len(query)) + query)
                head = _recv_exact(conn, 2)
                reply = _recv_exact(conn, struct.unpack("!H", head)[0]) if head else None
        else:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.settimeout(UPSTREAM_TIMEOUT)
                sock.connect(upstream)
                sock.send(query)
                reply = sock.recv(65535)
                while reply[:2] != query[:2]:  # a late answer to an earlier query: wait for ours
                    reply = sock.recv(65535)
    except OSError:
        reply = None
    if reply is None:
        qid, flags = struct.unpack_from("!HH", query)
        question = query[12:] if len(query) > 12 else b""
        header = struct.pack("!HHHHHH", qid, 0x8000 | (flags & 0x0100) | 0x0080 | RCODE_SERVFAIL, 1, 0, 0, 0)
        return header + question
    return reply


class ClusterDNS:
    """kube-dns: the zone file's names, the rest of cluster.local NXDOMAIN, other names forwarded."""

    def __init__(self, zone: ZoneFile, upstream: tuple[str, int] | None = None) -> None:
        self.zone = zone
        self.upstream = upstream

    def answer(self, query: bytes, tcp: bool = False) -> bytes | None:
        if self.upstream is not None:
            name = question_name(query)
            if name is not None and not in_cluster(name):
                return forward(query, self.upstream, tcp)
        return dns_answer(query, self.zone.get())


class Answerer(Protocol):
    def answer(self, query: bytes, tcp: bool = False) -> bytes | None: ...


class _ResolverAnswerer:
    def __init__(self, resolver: WorldResolver) -> None:
        self.resolver = resolver

    def answer(self, query: bytes, tcp: bool = False) -> bytes | None:
        return self.resolver.answer(query)


class _DNSUDPServer(socketserver.ThreadingUDPServer):
    allow_reuse_address = True
    daemon_threads = True
    answerer: Answerer


class _DNSTCPServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    answerer: Answerer


class _DNSUDP(socketserver.BaseRequestHandler):
    server: _DNSUDPServer

    def handle(self) -> None:
        data, sock = self.request
        reply = self.server.answerer.answer(data, tcp=False)
        if reply is not None:
            sock.sendto(reply, self.client_address)


class _DNSTCP(socketserver.BaseRequestHandler):
    server: _DNSTCPServer

    def handle(self) -> None:
        conn = self.request
        conn.settimeout(10)
        try:
            while True:
                head = _recv_exact(conn, 2)
                if head is None:
                    return
                query = _recv_exact(conn, struct.unpack("!H", head)[0])
                if query is None:
                    return
                reply = self.server.answerer.answer(query, tcp=True)
                if reply is None:
                    return
                conn.sendall(struct.pack("!H", len(reply)) + reply)
        except OSError:
            return


def _recv_exact(conn: socket.socket, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def serve_dns_with(answerer: Answerer, port: int, bind: Sequence[str] = ()) -> list[socketserver.BaseServer]:
    """UDP and TCP servers on ``port`` of each address in ``bind`` (all addresses when empty)."""
    servers: list[socketserver.BaseServer] = []
    for address in bind or ["0.0.0.0"]:
        udp = _DNSUDPServer((address, port), _DNSUDP)
        tcp = _DNSTCPServer((address, port), _DNSTCP)
        udp.answerer = tcp.answerer = answerer
        servers += [udp, tcp]
    return servers


def serve_dns(
    port: int, zone: ZoneFile, upstream: tuple[str, int] | None = None
) -> list[socketserver.BaseServer]:
    return serve_dns_with(ClusterDNS(zone, upstream), port)


def serve_resolver(port: int, hosts_file: str, bind: Sequence[str] = ()) -> list[socketserver.BaseServer]:
    from hubblepy.lab.worlddns import WorldResolver, read_hosts_file  # dnspython: only the resolver

    return serve_dns_with(_ResolverAnswerer(WorldResolver(read_hosts_file(Path(hosts_file)))), port, bind)


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hubblepy.lab.servers")
    p.add_argument("kind", choices=["http", "https", "tcp", "dns", "resolver"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--bind", action="append", default=[], help="listen on this address only (repeatable)")
    p.add_argument("--route", action="append", default=[], help="HTTP path answered with 200")
    p.add_argument("--cert", default="", help="HTTPS: certificate (PEM)")
    p.add_argument("--key", default="", help="HTTPS: private key (PEM)")
    p.add_argument("--zone-file", default="", help="DNS: JSON object of name -> IPv4")
    p.add_argument("--upstream", default="", help="DNS: IP:PORT names outside cluster.local go to")
    p.add_argument("--hosts-file", default="", help="resolver: the world's hosts (JSON)")
    args = p.parse_args(argv)
    bind = args.bind or ["0.0.0.0"]
    servers: list[socketserver.BaseServer]
    try:
        if args.kind == "http":
            servers = [serve_http(args.port, args.route, a) for a in bind]
        elif args.kind == "https":
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(args.cert, args.key)
            servers = [serve_http(args.port, args.route, a, context) for a in bind]
        elif args.kind == "tcp":
            servers = [serve_tcp(args.port, a) for a in bind]
        elif args.kind == "dns":
            servers = serve_dns(
                args.port, ZoneFile(args.zone_file), _address(args.upstream) if args.upstream else None
            )
        else:
            servers = serve_resolver(args.port, args.hosts_file, args.bind)
    except OSError as exc:
        sys.stderr.write(f"lab server {args.kind}: cannot listen on port {args.port}: {exc.strerror}\n")
        return 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    threads = [
        threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.5}, daemon=True) for s in servers
    ]
    for t in threads:
        t.start()
    stop.wait()
    for s in servers:
        s.shutdown()
        s.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
