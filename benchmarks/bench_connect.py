"""How fast a live command reports a connection it cannot make, per cause.

For each cause (nothing listens, unknown name, certificate for another name, unknown CA, TLS client
against a plaintext server, plaintext client against a TLS server) it prints the median wall time of
``hubble status --timeout 60s`` as a process (start-up included) and of the dial alone in this process,
over a few runs. The servers are gRPC servers on loopback (ports 50000-50999) with a throwaway CA.
No assertions.

Run: ``python benchmarks/bench_connect.py``.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GRPC_VERBOSITY", "NONE")  # the servers' handshake errors are expected
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "cli"))

import loopback  # noqa: E402

from hubblepy.cli.connection import Connection, LiveError, dial  # noqa: E402

RUNS = 5


def process_seconds(argv: list[str]) -> float:
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO), "HOME": "/nonexistent"}
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "hubblepy.cli", "status", *argv, "--timeout", "60s"],
                       capture_output=True, env=env, timeout=120)  # fmt: skip
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def dial_seconds(conn: Connection) -> float:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        with contextlib.suppress(LiveError):
            dial(conn)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        certs = loopback.make_ca_and_server_cert(Path(folder))
        tls_server, tls_address = loopback.health_server(certs)
        plain_server, plain_address = loopback.health_server()
        tls_local = tls_address.replace("127.0.0.1", "localhost")
        refused = f"127.0.0.1:{loopback.free_port()}"
        cases = [
            ("connection refused", ["--server", refused], Connection(server=refused, timeout_s=60)),
            ("unknown name", ["--server", "nonexistent.invalid:4245"],
             Connection(server="nonexistent.invalid:4245", timeout_s=60)),
            ("certificate for another name", ["--server", tls_local, "--tls", "--tls-ca-cert-files", str(certs["ca"])],
             Connection(server=tls_local, tls=True, tls_ca_cert_files=[str(certs["ca"])], timeout_s=60)),
            ("unknown CA", ["--server", tls_local, "--tls"], Connection(server=tls_local, tls=True, timeout_s=60)),
            ("TLS client, plaintext server", ["--server", plain_address, "--tls"],
             Connection(server=plain_address, tls=True, timeout_s=60)),
            ("plaintext client, TLS server", ["--server", tls_local], Connection(server=tls_local, timeout_s=60)),
        ]  # fmt: skip
        try:
            print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; median of {RUNS} runs")
            for name, argv, conn in cases:
                print(
                    f"{name:30s} hubble status {process_seconds(argv):6.3f} s   dial alone {dial_seconds(conn):6.3f} s"
                )
        finally:
            tls_server.stop(None)
            plain_server.stop(None)


if __name__ == "__main__":
    main()
