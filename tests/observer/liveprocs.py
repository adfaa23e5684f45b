"""Start real `hubble agent` / `hubble-relay` processes on loopback ports chosen by the OS.

Used by the observer and relay tests. Each process prints ``listening on HOST:PORT`` on stderr once
it serves; :class:`Procs` waits for that line, remembers the address and kills everything at the end.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
FLOWS = FIXTURES / "flows.jsonl"
_LISTENING = re.compile(r"listening on (\S+)")


class Proc:
    """A running server process with its address and collected stderr."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.popen = subprocess.Popen(
            argv,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.stderr_lines: list[str] = []
        self.address: str | None = None
        self._ready = threading.Event()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        if not self._ready.wait(30) or self.address is None:
            self.kill()
            raise RuntimeError(f"{argv} did not start: {''.join(self.stderr_lines)}")

    def _read_stderr(self) -> None:
        assert self.popen.stderr is not None
        for raw in self.popen.stderr:
            line = raw.decode(errors="replace")
            self.stderr_lines.append(line)
            m = _LISTENING.search(line)
            if m and self.address is None:
                self.address = m.group(1)
                self._ready.set()
        self._ready.set()

    @property
    def port(self) -> int:
        assert self.address is not None
        return int(self.address.rsplit(":", 1)[1])

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


class Procs:
    """Factory and owner of test processes."""

    def __init__(self) -> None:
        self.all: list[Proc] = []

    def agent(self, name: str, *extra: str, listen: str = "127.0.0.1:0") -> Proc:
        argv = [
            sys.executable,
            "-m",
            "hubblepy.observer",
            "--node-name",
            name,
            "--listen-address",
            listen,
            *extra,
        ]
        proc = Proc(argv)
        self.all.append(proc)
        return proc

    def relay(self, *extra: str) -> Proc:
        argv = [
            sys.executable,
            "-m",
            "relay",
            "--listen-address",
            "127.0.0.1:0",
            "--node-name",
            "relay-test",
            "--health-listen-address",  # not the fixed :4222, so relays can run side by side
            "127.0.0.1:0",
            *extra,
        ]
        proc = Proc(argv)
        self.all.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.all:
            proc.kill(signal.SIGTERM)


def hubble_cli() -> list[str]:
    """The `hubble` command: this checkout's, or ``$HUBBLEPY_HUBBLE_CMD`` (e.g. an upstream binary)."""
    override = os.environ.get("HUBBLEPY_HUBBLE_CMD", "")
    return override.split() if override else [sys.executable, "-m", "hubblepy.cli"]


def clean_env(**extra: str) -> dict[str, str]:
    """Environment without HUBBLE_* settings or a user config file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUBBLE")}
    env["HOME"] = "/nonexistent-hubblepy-test-home"
    env.pop("XDG_CONFIG_HOME", None)
    env.update(extra)
    return env


def make_pki(directory: Path, server_name: str = "n1.default.hubble-grpc.cilium.io") -> dict[str, Path]:
    """A test CA with a server certificate (for ``server_name``) and a client certificate, as PEM files."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def cert(subject: str, key, issuer: x509.Name, issuer_key, ca: bool, san: str | None) -> x509.Certificate:
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    def pem_key(key) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = cert("test-ca", ca_key, name("test-ca"), ca_key, True, None)
    files = {"ca": ca.public_bytes(serialization.Encoding.PEM)}
    for who, san in (("server", server_name), ("client", "client")):
        key = ec.generate_private_key(ec.SECP256R1())
        files[f"{who}-key"] = pem_key(key)
        files[who] = cert(who, key, ca.subject, ca_key, False, san).public_bytes(serialization.Encoding.PEM)
    paths = {}
    for label, data in files.items():
        path = directory / f"{label}.pem"
        path.write_bytes(data)
        paths[label] = path
    return paths
