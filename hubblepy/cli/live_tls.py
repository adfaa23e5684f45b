"""``--tls-allow-insecure`` for the live CLI: trust exactly the certificate the server presents.

Python gRPC has no switch to skip certificate verification. Instead the client first opens a plain
TLS connection with the :mod:`ssl` module (no verification, ALPN ``h2``, the client certificate if
one is configured), takes the server's leaf certificate, and then gives gRPC that certificate as its
only root with ``grpc.ssl_target_name_override`` set to a name the certificate carries (its first
DNS subjectAltName, else its first IP subjectAltName, else its subject common name). A self-signed
server is then accepted; the connection is still encrypted, only the identity is not checked.

The names are read with a small DER walker (:func:`certificate_names`) so the CLI needs no extra
package.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from dataclasses import dataclass

_OID_COMMON_NAME = bytes.fromhex("550403")  # 2.5.4.3
_OID_SUBJECT_ALT_NAME = bytes.fromhex("551d11")  # 2.5.29.17
_TAG_SEQUENCE = 0x30
_TAG_SET = 0x31
_TAG_OID = 0x06
_TAG_EXTENSIONS = 0xA3  # [3] EXPLICIT in TBSCertificate
_TAG_OCTET_STRING = 0x04
_TAG_DNS_NAME = 0x82  # GeneralName dNSName [2] IMPLICIT
_TAG_IP_ADDRESS = 0x87  # GeneralName iPAddress [7] IMPLICIT


class ProbeError(Exception):
    """The server's certificate could not be fetched or read (message fits on one line)."""


@dataclass(frozen=True)
class PresentedCertificate:
    """The server's leaf certificate (PEM) and the name to expect on it."""

    pem: bytes
    name: str


def _tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of value, end of value) of the DER element at ``pos``."""
    if pos + 2 > len(data):
        raise ValueError("truncated DER")
    tag = data[pos]
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise ValueError("bad DER length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    end = pos + length
    if end > len(data):
        raise ValueError("truncated DER")
    return tag, pos, end


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    out = []
    pos = start
    while pos < end:
        tag, vstart, vend = _tlv(data, pos)
        out.append((tag, vstart, vend))
        pos = vend
    return out


def certificate_names(der: bytes) -> tuple[list[str], list[str], str]:
    """(DNS subjectAltNames, IP subjectAltNames, subject common name) of a DER certificate."""
    tag, start, end = _tlv(der, 0)
    if tag != _TAG_SEQUENCE:
        raise ValueError("not a certificate")
    tbs_tag, tbs_start, tbs_end = _tlv(der, start)
    if tbs_tag != _TAG_SEQUENCE:
        raise ValueError("not a certificate")
    fields = _children(der, tbs_start, tbs_end)
    if fields and fields[0][0] == 0xA0:  # optional [0] version
        fields = fields[1:]
    # serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo, ...
    if len(fields) < 6:
        raise ValueError("not a certificate")
    common_name = ""
    _, subj_start, subj_end = fields[4]
    for rdn_tag, rdn_start, rdn_end in _children(der, subj_start, subj_end):
        if rdn_tag != _TAG_SET:
            continue
        for _, atv_start, atv_end in _children(der, rdn_start, rdn_end):
            parts = _children(der, atv_start, atv_end)
            if (
                len(parts) == 2
                and parts[0][0] == _TAG_OID
                and der[parts[0][1] : parts[0][2]] == _OID_COMMON_NAME
            ):
                common_name = der[parts[1][1] : parts[1][2]].decode("utf-8", "replace")
    dns_names: list[str] = []
    ip_names: list[str] = []
    for ext_tag, ext_start, _ in fields[6:]:
        if ext_tag != _TAG_EXTENSIONS:
            continue
        _, exts_start, exts_end = _tlv(der, ext_start)
        for _, one_start, one_end in _children(der, exts_start, exts_end):
            parts = _children(der, one_start, one_end)
            if not parts or der[parts[0][1] : parts[0][2]] != _OID_SUBJECT_ALT_NAME:
                continue
            value = parts[-1]
            if value[0] != _TAG_OCTET_STRING:
                continue
            _, names_start, names_end = _tlv(der, value[1])
            for name_tag, n_start, n_end in _children(der, names_start, names_end):
                raw = der[n_start:n_end]
                if name_tag == _TAG_DNS_NAME:
                    dns_names.append(raw.decode("ascii", "replace"))
                elif name_tag == _TAG_IP_ADDRESS and len(raw) in (4, 16):
                    ip_names.append(str(ipaddress.ip_address(raw)))
    return dns_names, ip_names, common_name


def _split_target(target: str) -> tuple[str, int]:
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        raise ProbeError(f"failed to connect to '{target}': missing port in address")
    return host.strip("[]") or "localhost", int(port)


def fetch_server_certificate(
    target: str, timeout_s: float, client_cert: str = "", client_key: str = ""
) -> PresentedCertificate:
    """Connect to ``target`` (HOST:PORT) without verifying it and return the certificate it shows."""
    host, port = _split_target(target)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    if client_cert:
        try:
            context.load_cert_chain(client_cert, client_key or None)
        except (OSError, ssl.SSLError) as exc:
            raise ProbeError(f"failed to load client certificate {client_cert}: {exc}") from None
    server_hostname = None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        server_hostname = host
    try:
        with (
            socket.create_connection((host, port), timeout=timeout_s) as raw,
            context.wrap_socket(raw, server_hostname=server_hostname) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError) as exc:
        reason = (
            getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        )
        raise ProbeError(f"failed to connect to '{target}': {str(reason).lower()}") from None
    if not der:
        raise ProbeError(f"failed to connect to '{target}': the server presented no certificate")
    try:
        dns_names, ip_names, common_name = certificate_names(der)
    except ValueError as exc:
        raise ProbeError(f"cannot read the certificate of '{target}': {exc}") from None
    name = (dns_names or ip_names or [common_name])[0]
    if not name:
        raise ProbeError(f"the certificate of '{target}' carries no name to check it against")
    return PresentedCertificate(pem=ssl.DER_cert_to_PEM_cert(der).encode(), name=name)
