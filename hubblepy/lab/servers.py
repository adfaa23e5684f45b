"""Small servers that lab pods run: ``python -m hubblepy.lab.servers KIND [options]``.

* ``http --port 8080 [--route /api/v1/orders ...]``: answers every method; 200 (POST: 201, created)
  with a small JSON body on the routes (all paths when none are given), 404 elsewhere. Request bodies
  (Content-Length or chunked) are read whole and their size is in the answer (``received``).
* ``tcp --port 5432``: a TCP echo server (stands in for postgres).
* ``dns --port 53 --zone-file FILE``: a real DNS server on UDP and TCP answering A queries for the
  names of FILE (a JSON object ``{"api.payments.svc.cluster.local": "10.244.0.11", ...}``, re-read
  when it changes, so recreated pods resolve to their new IP); NXDOMAIN for other names in
  ``cluster.local`` and REFUSED outside it. Clients find ``api`` and ``api.payments`` through their
  search domains.

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
import struct
import sys
import threading

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


def serve_http(port: int, routes: list[str]) -> socketserver.BaseServer:
    http.server.ThreadingHTTPServer.allow_reuse_address = True
    server = http.server.ThreadingHTTPServer(("0.0.0.0", port), _http_handler(set(routes)))
    server.daemon_threads = True
    return server


# -- TCP echo --------------------------------------------------------------------------------------
class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


def serve_tcp(port: int) -> socketserver.BaseServer:
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    server = socketserver.ThreadingTCPServer(("0.0.0.0", port), _Echo)
    server.daemon_threads = True
    return server


# -- DNS -------------------------------------------------------------------------------------------
TYPE_A = 1
CLASS_IN = 1
RCODE_NXDOMAIN = 3
RCODE_REFUSED = 5
RCODE_FORMERR = 1


def _read_name(msg: bytes, offset: int) -> tuple[str, int]:
    labels = []
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


class _DNSUDP(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data, sock = self.request
        reply = dns_answer(data, self.server.zone.get())  # type: ignore[attr-defined]
        if reply is not None:
            sock.sendto(reply, self.client_address)


class _DNSTCP(socketserver.BaseRequestHandler):
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
                reply = dns_answer(query, self.server.zone.get())  # type: ignore[attr-defined]
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


def serve_dns(port: int, zone: ZoneFile) -> list[socketserver.BaseServer]:
    socketserver.ThreadingUDPServer.allow_reuse_address = True
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    udp = socketserver.ThreadingUDPServer(("0.0.0.0", port), _DNSUDP)
    tcp = socketserver.ThreadingTCPServer(("0.0.0.0", port), _DNSTCP)
    for server in (udp, tcp):
        server.daemon_threads = True
        server.zone = zone  # type: ignore[attr-defined]
    return [udp, tcp]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hubblepy.lab.servers")
    p.add_argument("kind", choices=["http", "tcp", "dns"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--route", action="append", default=[], help="HTTP path answered with 200")
    p.add_argument("--zone-file", default="", help="DNS: JSON object of name -> IPv4")
    args = p.parse_args(argv)
    try:
        if args.kind == "http":
            servers = [serve_http(args.port, args.route)]
        elif args.kind == "tcp":
            servers = [serve_tcp(args.port)]
        else:
            servers = serve_dns(args.port, ZoneFile(args.zone_file))
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
