"""The lab's certificate authority: made at ``hubble lab up``, trusted by every lab pod.

:class:`LabCA` creates an EC P-256 CA (``ca.crt``; ``ca.key`` readable by root only) in the lab
directory and issues server certificates for the world's hosts (``issue("api.stripe.com")``; a
``*.example.com`` name gives a wildcard certificate). Pods trust it through a per-namespace
``/etc/ssl`` whose CA bundle also holds the lab CA (:func:`hubblepy.lab.netns.write_ca_bundle`),
so ``curl https://api.stripe.com`` works inside ``hubble lab exec`` without ``-k``.
Nothing here is meant to protect anything: the CA lives as long as the lab and signs only lab names.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
CERT_DIR = "certs"
VALIDITY = datetime.timedelta(days=30)
CLOCK_SKEW = datetime.timedelta(hours=1)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hubblepy lab"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def lab_ca_files(folder: Path) -> list[Path]:
    """The files :class:`LabCA` made in ``folder`` (CA certificate and key, issued certificates)."""
    issued = sorted((folder / CERT_DIR).glob("*")) if (folder / CERT_DIR).is_dir() else []
    return [folder / CA_CERT, folder / CA_KEY, *issued]


@dataclass(frozen=True)
class IssuedCert:
    cert: Path
    key: Path


class LabCA:
    """A CA certificate and key in ``folder``; :meth:`create` makes a new one."""

    def __init__(self, folder: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        self.folder = folder
        self.cert = cert
        self.key = key

    @property
    def cert_path(self) -> Path:
        return self.folder / CA_CERT

    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @classmethod
    def create(cls, folder: Path, name: str = "hubblepy lab CA") -> LabCA:
        folder.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        public = key.public_key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key, hashes.SHA256())
        )
        _write_key(folder / CA_KEY, key)
        (folder / CA_CERT).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cls(folder, cert, key)

    def issue(self, dns_name: str) -> IssuedCert:
        """A server certificate for ``dns_name`` (``*.`` prefix: wildcard), written under ``certs/``."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        ca_ski = self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(dns_name))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        folder = self.folder / CERT_DIR
        folder.mkdir(exist_ok=True)
        stem = dns_name.replace("*", "_wildcard")
        issued = IssuedCert(folder / f"{stem}.crt", folder / f"{stem}.key")
        _write_key(issued.key, key)
        issued.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return issued


__all__ = ["IssuedCert", "LabCA", "lab_ca_files"]
