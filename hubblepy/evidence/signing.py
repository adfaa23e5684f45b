"""Ed25519 keys and signatures for evidence manifests (``cryptography``).

Keys are PEM files: the private key in PKCS#8 (written 0600), the public key as SubjectPublicKeyInfo.
``manifest.sig`` holds the base64 of the 64-byte signature over the exact bytes of ``manifest.json``.
The manifest names the public key's SHA-256 fingerprint so that a reader can tell which key to ask for;
only a key obtained separately (``verify --pub-key``) proves who signed.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


class KeyError_(ValueError):
    """A key file that cannot be used; the text is one line for the user."""


def generate(private_path: Path, public_path: Path) -> str:
    """Write a new key pair (refusing to overwrite); returns the public key fingerprint."""
    for path in (private_path, public_path):
        if path.exists():
            raise KeyError_(f"{path} already exists (not overwritten)")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = public_pem_of(key.public_key())
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(private_pem)
    public_path.write_bytes(public_pem)
    return fingerprint(key.public_key())


def public_pem_of(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def fingerprint(key: Ed25519PublicKey) -> str:
    """``sha256:`` and the hex SHA-256 of the raw 32-byte public key."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise KeyError_(f"cannot read {what} {path}: {(exc.strerror or 'error').lower()}") from None


def load_private(path: Path) -> Ed25519PrivateKey:
    data = _read(path, "signing key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyError_(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyError_(f"{path} is not an Ed25519 key (make one with `hubble evidence keygen`)")
    return key


def load_public(path: Path) -> Ed25519PublicKey:
    data = _read(path, "public key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise KeyError_(f"{path} is not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyError_(f"{path} is not an Ed25519 public key")
    return key


def sign(key: Ed25519PrivateKey, data: bytes) -> bytes:
    """The signature file's contents for ``data``."""
    return base64.b64encode(key.sign(data)) + b"\n"


def check(key: Ed25519PublicKey, data: bytes, signature_file: bytes) -> bool:
    try:
        signature = base64.b64decode(signature_file.strip(), validate=True)
        key.verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True
