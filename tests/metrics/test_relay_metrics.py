"""`hubble-relay --metrics-listen-address`: connected nodes, flows forwarded, node errors."""

from __future__ import annotations

import subprocess
import sys
import time

from agentproc import Agent, free_port, scrape
from hubbletest import REPO_ROOT, clean_env, run_hubble

SAMPLE = REPO_ROOT / "hubblepy" / "sample" / "payments-sample.jsonl"


def test_relay_metrics() -> None:
    agent = Agent("--node-name", "n1", "--replay", str(SAMPLE), "--replay-verbatim")
    port = free_port()
    relay = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "relay",
            "--listen-address",
            "127.0.0.1:0",
            "--health-listen-address",
            "",
            "--peers",
            f"n1={agent.address}",
            "--metrics-listen-address",
            f"127.0.0.1:{port}",
        ],
        cwd=REPO_ROOT,
        env={**clean_env(), "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert relay.stderr is not None
        # node state lines (relay.peers) may come before or between the relay's own start-up lines
        lines: list[str] = []
        while not any(ln.startswith("hubble-relay: metrics on") for ln in lines) and len(lines) < 20:
            lines.append(relay.stderr.readline().strip())
        assert f"hubble-relay: metrics on 127.0.0.1:{port}" in lines, lines
        listening = [ln for ln in lines if ln.startswith("hubble-relay: listening on ")]
        assert listening, lines
        address = listening[0].rsplit(" ", 1)[1]

        def status() -> dict[str, float]:
            return {
                labels["status"]: v for labels, v in scrape(port)["hubble_relay_pool_peer_connection_status"]
            }

        deadline = time.monotonic() + 30
        while status().get("READY") != 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert status()["READY"] == 1
        result = run_hubble(["observe", "--server", address, "--last", "10", "-o", "json"])
        assert result.returncode == 0 and len(result.stdout.splitlines()) == 10
        assert scrape(port)["hubble_relay_flows_forwarded_total"][0][1] >= 10
        follow = subprocess.Popen(  # a follow stream through the relay, then the node goes away
            [sys.executable, "-m", "hubblepy.cli", "observe", "--server", address, "-f", "--last", "1"],
            cwd=REPO_ROOT,
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert follow.stdout is not None and follow.stdout.readline()  # streaming
            agent.popen.kill()  # the node dies under a live stream
            agent.popen.wait()

            def errors() -> dict[str, float]:
                return {labels["node"]: v for labels, v in scrape(port)["hubble_relay_node_errors_total"]}

            deadline = time.monotonic() + 30
            while (
                errors().get("n1", 0) < 1 or status().get("READY", 0) != 0
            ) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert errors()["n1"] >= 1
            assert status().get("READY") == 0
        finally:
            follow.kill()
            follow.wait()
    finally:
        agent.stop()
        relay.terminate()
        relay.wait(15)
