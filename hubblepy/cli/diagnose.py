"""Why a connection failed, found step by step as Go's dialer would report it.

gRPC only says that a channel failed; :func:`diagnose` repeats the steps itself (name lookup, TCP
connect, then the TLS handshake or the HTTP/2 greeting) and names the first one that fails, in Go's
words where Go has them, followed by the flag that fixes it.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from typing import Any

from hubblepy.cli.live_tls import certificate_names

_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
# OpenSSL verify results (X509_V_ERR_*) that mean "the chain does not end at a CA we trust".
_UNKNOWN_AUTHORITY = {2, 18, 19, 20, 21, 27}
_HOSTNAME_MISMATCH = 62
_EXPIRED = {9, 10}

HINT_SERVER = "check --server"
HINT_REFUSED = "nothing listens there: check --server, or start the server / relay"
HINT_NAME = "set --tls-server-name to a name the certificate carries"
HINT_CA = "pass the CA that signed it with --tls-ca-cert-files, or use --tls-allow-insecure"
HINT_NOT_TLS = "the server does not speak TLS: drop --tls and the tls:// prefix"
HINT_IS_TLS = "the server speaks TLS: use --tls or a tls:// address"


def split_host_port(target: str) -> tuple[str, int] | None:
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]") or "localhost", int(port)


def diagnose(conn: Any, target: str, use_tls: bool, budget_s: float) -> str | None:
    """One line naming why ``target`` cannot be used, or None when every step works."""
    if target.startswith("unix:"):
        return _unix_problem(target)
    parts = split_host_port(target)
    if parts is None:
        return f"address {target}: missing port in address ({HINT_SERVER})"
    host, port = parts
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return f"dial tcp: lookup {host}: no such host ({HINT_SERVER})"
    first_error = ""
    sock = None
    for family, kind, proto, _, address in addresses:
        candidate = socket.socket(family, kind, proto)
        candidate.settimeout(budget_s)
        try:
            candidate.connect(address)
        except OSError as exc:
            candidate.close()
            if not first_error:
                first_error = _connect_error(address, exc)
            continue
        sock = candidate
        break
    if sock is None:
        return first_error or f"dial tcp: lookup {host}: no such host ({HINT_SERVER})"
    with sock:
        if use_tls:
            return _tls_problem(conn, sock, host, target, budget_s)
        return _plaintext_problem(sock, target, budget_s)


def _unix_problem(target: str) -> str | None:
    """A ``unix:PATH`` or ``unix:///PATH`` target: can its socket be connected to?"""
    path = target.removeprefix("unix:")
    if path.startswith("//"):
        path = path[2:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(path)
        except OSError as exc:
            return f"dial unix {path}: connect: {(exc.strerror or str(exc)).lower()} ({HINT_SERVER})"
    return None


def _connect_error(address: tuple, exc: OSError) -> str:
    ip = address[0]
    shown = f"[{ip}]:{address[1]}" if ":" in ip else f"{ip}:{address[1]}"
    if isinstance(exc, ConnectionRefusedError):
        return f"dial tcp {shown}: connect: connection refused ({HINT_REFUSED})"
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"dial tcp {shown}: i/o timeout ({HINT_SERVER})"
    return f"dial tcp {shown}: connect: {(exc.strerror or str(exc)).lower()} ({HINT_SERVER})"


def _tls_context(conn: Any, verify: bool) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.set_alpn_protocols(["h2"])
    if verify:
        if conn.tls_ca_cert_files:
            for path in conn.tls_ca_cert_files:
                context.load_verify_locations(path)
        else:
            context.load_default_certs()
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if conn.tls_client_cert_file:
        context.load_cert_chain(conn.tls_client_cert_file, conn.tls_client_key_file or None)
    return context


def _server_hostname(name: str) -> str | None:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return name
    return None


def _tls_problem(conn: Any, sock: socket.socket, host: str, target: str, budget_s: float) -> str | None:
    expected = conn.tls_server_name or host
    try:
        context = _tls_context(conn, verify=True)
    except (OSError, ssl.SSLError) as exc:
        return f"cannot load the TLS files: {exc}"
    if _server_hostname(expected) is None:
        # An IP address is checked against the certificate's IP names.
        context.check_hostname = True
    try:
        with context.wrap_socket(sock, server_hostname=expected) as tls:
            tls.do_handshake()
    except ssl.SSLCertVerificationError as exc:
        code = getattr(exc, "verify_code", 0)
        prefix = "tls: failed to verify certificate: x509: "
        if code == _HOSTNAME_MISMATCH:
            names = _presented_names(conn, target, budget_s)
            valid = ", ".join(names) if names else "no name"
            return f"{prefix}certificate is valid for {valid}, not {expected} ({HINT_NAME})"
        if code in _UNKNOWN_AUTHORITY:
            return f"{prefix}certificate signed by unknown authority ({HINT_CA})"
        if code in _EXPIRED:
            return f"{prefix}certificate has expired or is not yet valid ({HINT_CA})"
        return f"{prefix}{getattr(exc, 'verify_message', '') or exc}"
    except ssl.SSLError as exc:
        reason = (getattr(exc, "reason", "") or "").upper()
        if reason in (
            "WRONG_VERSION_NUMBER",
            "RECORD_LAYER_FAILURE",
            "PACKET_LENGTH_TOO_LONG",
            "HTTP_REQUEST",
        ):
            return f"tls: first record does not look like a TLS handshake ({HINT_NOT_TLS})"
        return f"tls: {str(reason or exc).lower().replace('_', ' ')}"
    except (ConnectionResetError, BrokenPipeError, EOFError):
        return f"tls: the server closed the connection during the handshake ({HINT_NOT_TLS})"
    except OSError as exc:
        if "EOF" in str(exc):
            return f"tls: the server closed the connection during the handshake ({HINT_NOT_TLS})"
        return f"tls: {exc}"
    return None


def _presented_names(conn: Any, target: str, budget_s: float) -> list[str]:
    parts = split_host_port(target)
    if parts is None:
        return []
    try:
        context = _tls_context(conn, verify=False)
        with (
            socket.create_connection(parts, timeout=budget_s) as raw,
            context.wrap_socket(raw, server_hostname=_server_hostname(parts[0])) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
        dns, ips, common_name = certificate_names(der or b"")
    except (OSError, ValueError, ssl.SSLError):
        return []
    return dns + ips or ([common_name] if common_name else [])


def _plaintext_problem(sock: socket.socket, target: str, budget_s: float) -> str | None:
    """A plaintext client: does an HTTP/2 server answer, or a TLS one?"""
    try:
        sock.sendall(_H2_PREFACE)
        sock.settimeout(budget_s)
        reply = sock.recv(16)
    except OSError:
        reply = b""
    if len(reply) >= 4 and reply[3] == 0x04:  # a SETTINGS frame: the server speaks HTTP/2
        return None
    if _speaks_tls(target, budget_s):
        return f"the server speaks TLS, this client plaintext ({HINT_IS_TLS})"
    return "the server does not speak HTTP/2 (is it a Hubble server?)"


def _speaks_tls(target: str, budget_s: float) -> bool:
    parts = split_host_port(target)
    if parts is None:
        return False
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection(parts, timeout=budget_s) as raw,
            context.wrap_socket(raw, server_hostname=_server_hostname(parts[0])),
        ):
            return True
    except (OSError, ssl.SSLError):
        return False
