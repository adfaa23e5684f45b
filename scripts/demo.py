"""The main job: tell the seed article's payments story with flows.

Run by ``bash scripts/demo.sh`` (``python scripts/demo.py [--sample]``). Each step prints the command it runs, then its output, exactly as a
user would type it. Steps run through the real ``hubble`` CLI in a subprocess.
"""

from __future__ import annotations

import argparse
import os
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hubblepy.sample.path import sample_capture_path  # noqa: E402


def say(text: str) -> None:
    """A heading line for a step of the story."""
    print(f"\n\033[1m== {text}\033[0m" if sys.stdout.isatty() else f"\n== {text}", flush=True)


def hubble(*args: str, check: bool = True) -> int:
    """Run ``hubble ARGS`` and show the command line first."""
    print(f"$ hubble {shlex.join(args)}", flush=True)
    proc = subprocess.run([sys.executable, "-m", "hubblepy.cli", *args], env=os.environ.copy())
    if check and proc.returncode != 0:
        raise SystemExit(f"demo: `hubble {shlex.join(args)}` failed with exit status {proc.returncode}")
    return proc.returncode


def sample_story() -> None:
    """The payments story from the capture shipped with the package."""
    capture = sample_capture_path()
    say("The payments namespace under default-deny + api-allow (recorded capture)")
    hubble(
        "observe",
        "--input-file",
        capture,
        "--namespace",
        "payments",
        "--type",
        "policy-verdict",
        "--print-policy-names",
    )
    say("Why was the probe's request to api dropped? (Verify step 5)")
    hubble(
        "observe", "--input-file", capture, "--namespace", "payments", "--verdict", "DROPPED", "-o", "compact"
    )
    say("L7: frontend may GET but a POST gets 403")
    hubble(
        "observe",
        "--input-file",
        capture,
        "--namespace",
        "payments",
        "--protocol",
        "http",
        "--http-method",
        "POST",
    )
    say("Audit mode on the api pod: what default-deny would drop")
    hubble("observe", "--input-file", capture, "--namespace", "payments", "--verdict", "AUDIT")
    say("Audit evidence with --jq: who was denied, to which port")
    hubble(
        "observe",
        "--input-file",
        capture,
        "--verdict",
        "DROPPED",
        "--type",
        "drop",
        "--jq",
        "[.flow.time, .flow.source.pod_name, .flow.destination.pod_name, "
        "(.flow.l4.TCP.destination_port|tostring), .flow.drop_reason_desc] | @tsv",
    )


def lab_story() -> None:
    """The live story: the payments lab on real eBPF, the article's Verify steps, then its flows."""
    say("The payments lab on this machine: pods as network namespaces, eBPF policy on their veths")
    hubble("lab", "verify")
    say("Every flow of the payments namespace, through the relay on localhost:4245")
    hubble("observe", "--namespace", "payments", "--last", "40")
    say("Policy verdicts with the policies that decided them")
    hubble(
        "observe",
        "--namespace",
        "payments",
        "--type",
        "policy-verdict",
        "--print-policy-names",
        "--last",
        "10",
    )
    say("L7: the node's proxy judged every HTTP request of frontend -> api (api-http-l7)")
    hubble("observe", "--namespace", "payments", "--protocol", "http", "--print-policy-names", "--last", "6")
    say("DNS-aware egress (Verify step 4): the DNS proxy saw api's lookups; its flows carry the names")
    hubble("observe", "--pod", "payments/api", "--protocol", "dns", "--last", "4")
    hubble(
        "observe",
        "--from-pod",
        "payments/api",
        "--to-fqdn",
        "api.stripe.com",
        "--to-port",
        "443",
        "--last",
        "4",
    )
    hubble(
        "observe",
        "--from-pod",
        "payments/api",
        "--to-fqdn",
        "example.com",
        "--print-policy-names",
        "--last",
        "2",
    )
    hubble("lab", "fqdn", "cache", "list")
    hubble("lab", "status")
    print(
        "\nThe lab keeps running: try `.venv/bin/hubble observe -f`, `hubble lab status`; remove it with "
        "`.venv/bin/hubble lab down`."
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_serving(address: str, timeout: float = 20.0) -> None:
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, int(port)), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"demo: nothing is serving on {address}")


def multinode_story() -> None:
    """Two replay nodes behind a relay: flows of every node through one endpoint, in time order."""
    say("Several nodes through one relay: two replay nodes (lab-worker, lab-worker2) and hubble-relay")
    capture = sample_capture_path()
    nodes = {"lab-worker": f"127.0.0.1:{_free_port()}", "lab-worker2": f"127.0.0.1:{_free_port()}"}
    relay = f"127.0.0.1:{_free_port()}"
    python = sys.executable
    procs = [
        subprocess.Popen(
            [
                python,
                "-m",
                "hubblepy.cli",
                "agent",
                "--node-name",
                name,
                "--listen-address",
                address,
                "--replay",
                capture,
                "--rate",
                "200",
            ],
            stderr=subprocess.DEVNULL,
        )
        for name, address in nodes.items()
    ]
    peers = ",".join(f"{name}={address}" for name, address in nodes.items())
    procs.append(
        subprocess.Popen(
            [
                python,
                "-m",
                "relay",
                "--listen-address",
                relay,
                "--peers",
                peers,
                "--health-listen-address",
                "",
            ],
            stderr=subprocess.DEVNULL,
        )
    )
    try:
        for address in [*nodes.values(), relay]:
            _wait_serving(address)
        time.sleep(1.5)  # let the replay sources publish some flows
        hubble("list", "nodes", "--server", relay)
        hubble("observe", "--server", relay, "--print-node-name", "--last", "12")
        hubble(
            "observe",
            "--server",
            relay,
            "--verdict",
            "DROPPED",
            "--type",
            "drop",
            "--print-node-name",
            "--last",
            "4",
            "--strict-last",
        )
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=10)


def lab_unavailable_reason() -> str | None:
    """Why the live lab cannot run here (None when it can)."""
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces and eBPF)"
    try:
        import bcc  # noqa: F401
    except ImportError:
        return "bcc is not installed (Debian package python3-bpfcc)"
    return None


def main(argv: list[str] | None = None) -> None:
    """``python scripts/demo.py [--sample]``."""
    parser = argparse.ArgumentParser(prog="demo", description=__doc__)
    parser.add_argument(
        "--sample", action="store_true", help="use the recorded capture instead of a live lab"
    )
    options = parser.parse_args(argv)
    reason = None if options.sample else lab_unavailable_reason()
    if options.sample or reason:
        if reason:
            print(f"demo: {reason}; showing the recorded capture of the same story instead.")
        sample_story()
    else:
        lab_story()
    multinode_story()


if __name__ == "__main__":
    main()
