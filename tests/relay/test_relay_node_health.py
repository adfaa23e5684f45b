"""The relay says what is wrong with its nodes, and gets a returning node streaming again fast.

Real agent and relay processes. The relay logs each node's condition once per change (connected,
disconnected, unavailable with the cause: refused, TLS handshake...), never once per retry;
`hubble list nodes` shows the cause under ``-o wide`` and ``-o json`` only. The long test takes
nodes down for 60 s and 120 s (both at once, so it lasts about two minutes) and requires each to be
streaming through the relay again within 5 s of listening again, with the default --retry-timeout.
"""

import io
import json
import re
import signal
import socket
import sys
import threading
import time

import grpc
import pytest

from hubblepy.api.observer import observer_pb2, observer_pb2_grpc
from hubblepy.cli.list import list_main
from relay.peers import connection_cause

liveprocs = sys.modules["liveprocs"]
FLOWS = liveprocs.FLOWS
ENV = {"HOME": "/nonexistent-hubblepy-test-home"}
BACK_WITHIN_S = 5.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reserved_port() -> socket.socket:
    """A port that refuses connections and that no other process can take: bound, not listening."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    return s


def node_log(relay, name):
    """The relay's node-condition lines for ``name``: [(msg, cause)]."""
    out = []
    for line in list(relay.stderr_lines):
        m = re.search(r'msg="(node \w+)" node=(\S+) address=\S+(?: cause=("(?:[^"\\]|\\.)*"|\S+))?', line)
        if m and m.group(2) == name:
            out.append(
                (m.group(1), json.loads(m.group(3)) if (m.group(3) or "").startswith('"') else m.group(3))
            )
    return out


def list_nodes(address, *flags):
    out, err = io.StringIO(), io.StringIO()
    code = list_main(["nodes", "--server", address, *flags], ENV, out, err)
    assert code == 0, err.getvalue()
    return out.getvalue()


def wait_for(condition, seconds, what):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what()
        time.sleep(0.05)


def test_connection_cause_keeps_the_useful_part():
    details = (
        "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: "
        "Failed to connect to remote host: Connection refused"
    )
    assert connection_cause(details, "127.0.0.1:1") == "Failed to connect to remote host: Connection refused"
    assert connection_cause("", "x:1") == "unknown error"


def test_refused_and_tls_failures_are_logged_once_and_listed(procs, tmp_path):
    pki = liveprocs.make_pki(tmp_path)
    plain = procs.agent("plain", "--replay", str(FLOWS), "--rate", "10")
    hole = reserved_port()
    dead = f"127.0.0.1:{hole.getsockname()[1]}"
    refused_relay = procs.relay("--peers", f"good={plain.address},dead={dead}", "--dial-timeout", "1s")
    tls_relay = procs.relay(
        "--peers",
        f"plain={plain.address}",
        "--tls-hubble-server-ca-files",
        str(pki["ca"]),
        "--dial-timeout",
        "1s",
    )
    wait_for(lambda: node_log(refused_relay, "dead"), 20, lambda: refused_relay.stderr_lines)
    wait_for(lambda: node_log(tls_relay, "plain"), 20, lambda: tls_relay.stderr_lines)
    time.sleep(3)  # several reconnection attempts (at most 1 s apart) fail meanwhile
    assert node_log(refused_relay, "dead") == [
        ("node unavailable", "Failed to connect to remote host: Connection refused")
    ]
    [(msg, cause)] = node_log(tls_relay, "plain")
    assert msg == "node unavailable" and "handshake failed" in cause.lower(), cause

    default = list_nodes(refused_relay.address)
    assert "REASON" not in default and "Connection refused" not in default
    assert default.splitlines()[0].split() == ["NAME", "STATUS", "AGE", "FLOWS/S", "CURRENT/MAX-FLOWS"]
    wide = list_nodes(refused_relay.address, "-o", "wide").splitlines()
    assert wide[0].split()[-1] == "REASON"
    dead_row = next(r for r in wide if r.startswith("dead "))
    assert "Unavailable" in dead_row and dead_row.endswith(
        "Failed to connect to remote host: Connection refused"
    )
    rows = json.loads(list_nodes(refused_relay.address, "-o", "json"))
    by_name = {r["name"]: r for r in rows}
    assert by_name["dead"]["reason"] == "Failed to connect to remote host: Connection refused"
    assert "reason" not in by_name["good"]
    tls_rows = json.loads(list_nodes(tls_relay.address, "-o", "json"))
    assert "handshake failed" in tls_rows[0]["reason"].lower()
    # all nodes connected: the wide table is upstream's, without the extra column
    assert "REASON" not in list_nodes(procs.relay("--peers", plain.address).address, "-o", "wide")
    hole.close()


class FlowClock:
    """A follow client on the relay: when the last flow from each node arrived."""

    def __init__(self, address):
        self.last = {}
        self.channel = grpc.insecure_channel(address)
        self.stream = observer_pb2_grpc.ObserverStub(self.channel).GetFlows(
            observer_pb2.GetFlowsRequest(follow=True)
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            for resp in self.stream:
                if resp.HasField("flow"):
                    self.last[resp.node_name] = time.monotonic()
        except grpc.RpcError:
            pass

    def close(self):
        self.stream.cancel()
        self.channel.close()


@pytest.mark.slow
def test_nodes_back_after_60s_and_120s_outages_stream_within_5s(procs):
    outages = {"n60": 60.0, "n120": 120.0}
    ports = {name: free_port() for name in outages}

    def start(name):
        # 200 flows/s: the relay's sort buffer (100 flows) releases a new node's flows within 0.5 s
        return procs.agent(name, "--replay", str(FLOWS), "--rate", "200", listen=f"127.0.0.1:{ports[name]}")

    nodes = {name: start(name) for name in outages}
    relay = procs.relay(
        "--peers", ",".join(f"{n}=127.0.0.1:{p}" for n, p in ports.items())
    )  # default retry 30s
    clock = FlowClock(relay.address)
    try:
        wait_for(lambda: set(clock.last) >= set(outages), 30, lambda: clock.last)
        holes = {}
        for name, node in nodes.items():
            node.kill(signal.SIGKILL)
            holes[name] = socket.socket()  # keep the port from other processes during the outage
            holes[name].setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            holes[name].bind(("127.0.0.1", ports[name]))
        down_at = time.monotonic()
        wait_for(lambda: all(len(node_log(relay, n)) >= 3 for n in outages), 30, lambda: relay.stderr_lines)
        back_after = {}
        for name, outage in sorted(outages.items(), key=lambda kv: kv[1]):
            time.sleep(max(0.0, down_at + outage - time.monotonic()))
            holes.pop(name).close()
            start(name)  # returns once the agent listens again
            listening_at = time.monotonic()
            wait_for(
                lambda n=name, t=listening_at: clock.last.get(n, 0) > t,
                BACK_WITHIN_S,
                lambda n=name: f"{n}: no flow through the relay within {BACK_WITHIN_S}s of listening again",
            )
            back_after[name] = clock.last[name] - listening_at
    finally:
        clock.close()
    for name in outages:
        states = [msg for msg, _ in node_log(relay, name)]
        # one line per change, however many reconnection attempts failed during the outage
        assert states[0] == "node connected" and states[-1] == "node connected", states
        assert states.count("node unavailable") == 1, node_log(relay, name)
        assert len(states) <= 4, node_log(relay, name)
        causes = [cause for msg, cause in node_log(relay, name) if msg == "node unavailable"]
        assert causes == ["Failed to connect to remote host: Connection refused"]
    print("streaming again after", {k: round(v, 2) for k, v in back_after.items()}, "s")


def test_peer_service_failure_is_logged_once(procs):
    hole = reserved_port()
    relay = procs.relay("--peer-service", f"127.0.0.1:{hole.getsockname()[1]}")

    def lines():
        return [line for line in relay.stderr_lines if "peer service" in line]

    wait_for(lines, 20, lambda: relay.stderr_lines)
    time.sleep(3)  # several more attempts fail meanwhile
    hole.close()
    [line] = lines()
    assert 'msg="peer service unavailable"' in line and "Connection refused" in line, line
