"""Agent events: the builders, the publisher's hold-until-attach, the lab's policy sync sending policy
and ipcache events, and a real `hubble agent` serving AGENT_STARTED to `hubble observe agent-events`.
"""

from __future__ import annotations

import json
import sys
import threading
from concurrent import futures
from pathlib import Path

import grpc
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from agentproc import Agent, free_port  # noqa: E402
from hubbletest import run_hubble  # noqa: E402

from hubblepy.lab.policysync import PolicySync
from hubblepy.observer import agentevents as ev
from hubblepy.observer.core import Observer
from hubblepy.parser import StaticResolver
from hubblepy.policy import IdentityAllocator

BASE = 1_709_251_200_000_000_000  # 2024-03-01T00:00:00Z

CNP = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: api-egress
  namespace: payments
  uid: 0b5d7a8e-1111-4222-8333-944445555666
spec:
  endpointSelector:
    matchLabels:
      app: api
  egress:
  - toCIDR:
    - 203.0.113.0/24
"""

TWO_SPECS = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: two
  namespace: payments
  uid: 0b5d7a8e-1111-4222-8333-944445555777
specs:
- endpointSelector:
    matchLabels:
      app: api
  ingress:
  - {}
- endpointSelector:
    matchLabels:
      app: db
  ingress:
  - {}
"""


class Sink:
    def __init__(self) -> None:
        self.events: list[tuple[int, dict]] = []

    def publish_agent_event(self, time_ns: int, event: dict) -> None:
        self.events.append((time_ns, event))


def test_builders_give_canonical_events():
    assert ev.agent_started(BASE) == {
        "type": "AGENT_STARTED",
        "agent_start": {"time": "2024-03-01T00:00:00Z"},
    }
    assert ev.policy_update(["a", "b"], 3, 1, deleted=True) == {
        "type": "POLICY_DELETED",
        "policy_update": {"labels": ["a", "b"], "revision": "3", "rule_count": "1"},
    }
    assert ev.endpoint_update(7, ["k8s:app=api"], "api", "payments") == {
        "type": "ENDPOINT_CREATED",
        "endpoint_update": {"id": "7", "labels": ["k8s:app=api"], "pod_name": "api", "namespace": "payments"},
    }
    upsert = ev.ipcache_update("10.0.0.5/32", 300, old_identity=0, namespace="payments", pod_name="api")
    assert upsert["ipcache_update"] == {
        "cidr": "10.0.0.5/32",
        "identity": 300,
        "old_identity": 0,
        "namespace": "payments",
        "pod_name": "api",
    }
    with pytest.raises(ValueError, match="needs a CIDR"):
        ev.ipcache_update("", 1)
    with pytest.raises(ValueError, match="out of range"):
        ev.ipcache_update("10.0.0.1/32", 1 << 32)


def test_publisher_holds_events_until_an_observer_is_attached():
    publisher = ev.AgentEventPublisher()
    publisher.publish(ev.agent_started(BASE), BASE)
    publisher.publish(ev.endpoint_update(1), BASE + 1)
    assert publisher.pending == 2 and publisher.published == 0
    sink = Sink()
    publisher.attach(sink)
    publisher.publish(ev.endpoint_update(2), BASE + 2)
    assert [t for t, _ in sink.events] == [BASE, BASE + 1, BASE + 2]
    assert [e["type"] for _, e in sink.events] == ["AGENT_STARTED", "ENDPOINT_CREATED", "ENDPOINT_CREATED"]
    assert publisher.pending == 0 and publisher.published == 3


def test_publisher_keeps_the_newest_events_when_too_many_wait():
    publisher = ev.AgentEventPublisher()
    for i in range(ev.PENDING_LIMIT + 5):
        publisher.publish(ev.endpoint_update(i + 1), BASE + i)
    assert publisher.pending == ev.PENDING_LIMIT and publisher.dropped == 5
    sink = Sink()
    publisher.attach(sink)
    assert sink.events[0][1]["endpoint_update"]["id"] == "6"


def test_ipcache_events_name_the_old_identity_and_skip_no_change():
    sink = Sink()
    publisher = ev.AgentEventPublisher()
    publisher.attach(sink)
    cache = ev.IPCacheEvents(publisher)
    cache.upsert("10.0.0.5/32", 300)
    cache.upsert("10.0.0.5/32", 300)  # nothing changed: no event
    cache.upsert("10.0.0.5/32", 301)
    cache.delete("10.0.0.5/32")
    cache.delete("10.0.0.5/32")  # unknown by now: no event
    got = [(e["type"], e["ipcache_update"]) for _, e in sink.events]
    assert got == [
        ("IPCACHE_UPSERTED", {"cidr": "10.0.0.5/32", "identity": 300}),
        ("IPCACHE_UPSERTED", {"cidr": "10.0.0.5/32", "identity": 301, "old_identity": 300}),
        ("IPCACHE_DELETED", {"cidr": "10.0.0.5/32", "identity": 301}),
    ]


def test_policy_sync_sends_policy_and_cidr_ipcache_events():
    sync = PolicySync(IdentityAllocator(), StaticResolver())
    sink = Sink()
    sync.events.attach(sink)
    sync.apply_text(CNP, "cnp.yaml", [])
    sync.apply_text(TWO_SPECS, "two.yaml", [])
    sync.apply_text(CNP, "cnp.yaml", [], delete=True)
    events = [e for _, e in sink.events]
    labels = [
        "k8s:io.cilium.k8s.policy.derived-from=CiliumNetworkPolicy",
        "k8s:io.cilium.k8s.policy.name=api-egress",
        "k8s:io.cilium.k8s.policy.namespace=payments",
        "k8s:io.cilium.k8s.policy.uid=0b5d7a8e-1111-4222-8333-944445555666",
    ]
    assert events[0] == {
        "type": "POLICY_UPDATED",
        "policy_update": {"labels": labels, "revision": "1", "rule_count": "1"},
    }
    assert events[1]["type"] == "IPCACHE_UPSERTED"
    assert events[1]["ipcache_update"]["cidr"] == "203.0.113.0/24"
    cidr_identity = events[1]["ipcache_update"]["identity"]
    assert cidr_identity >= 1 << 24  # a local (CIDR) identity
    two = events[2]["policy_update"]
    assert events[2]["type"] == "POLICY_UPDATED" and two["revision"] == "2" and two["rule_count"] == "2"
    assert len(two["labels"]) == 8 and two["labels"][:4] == two["labels"][4:]  # once per rule
    assert events[3] == {
        "type": "POLICY_DELETED",
        "policy_update": {"labels": labels, "revision": "3", "rule_count": "1"},
    }
    assert events[4] == {
        "type": "IPCACHE_DELETED",
        "ipcache_update": {"cidr": "203.0.113.0/24", "identity": cidr_identity},
    }
    assert len(events) == 5
    assert "203.0.113.0/24" not in sync.identities.cidr_identities()  # released with the policy


@pytest.fixture()
def served_observer():
    """An Observer behind our real gRPC Observer service on loopback."""
    from hubblepy.observer.service import NodeServices, observer_method_handlers

    observer = Observer("node-1")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    services = NodeServices(observer, {"name": "node-1"}, [], threading.Event())
    handlers = grpc.method_handlers_generic_handler("observer.Observer", observer_method_handlers(services))
    server.add_generic_rpc_handlers((handlers,))
    port = free_port()
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    yield observer, f"127.0.0.1:{port}"
    server.stop(None)


def test_every_kind_goes_over_the_wire_and_prints_like_upstream(served_observer):
    observer, address = served_observer
    publisher = ev.AgentEventPublisher()
    publisher.publish(ev.agent_started(BASE), BASE)
    publisher.publish(ev.policy_update(["k8s:a=b"], 4, 1), BASE + 1_000_000)
    publisher.publish(
        ev.endpoint_update(9, ["k8s:app=api"], "api", "payments", deleted=True), BASE + 2_000_000
    )
    publisher.publish(ev.ipcache_update("10.0.0.5/32", 300, old_identity=0), BASE + 3_000_000)
    publisher.publish(
        ev.ipcache_update("10.0.0.6/32", 301, host_ip="10.0.0.1", deleted=True), BASE + 4_000_000
    )
    publisher.attach(observer)
    out = run_hubble(["observe", "agent-events", "--server", address, "--last", "10"])
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode() == (
        "Mar  1 00:00:00.000: AGENT_STARTED (start time: Mar  1 00:00:00.000)\n"
        "Mar  1 00:00:00.001: POLICY_UPDATED (labels: [k8s:a=b], revision: 4, count: 1)\n"
        "Mar  1 00:00:00.002: ENDPOINT_DELETED (id: 9, namespace: payments, pod name: api)\n"
        "Mar  1 00:00:00.003: IPCACHE_UPSERTED (cidr: 10.0.0.5/32, identity: 300, old identity: 0, encrypt key: 0)\n"
        "Mar  1 00:00:00.004: IPCACHE_DELETED (cidr: 10.0.0.6/32, identity: 301, host ip: 10.0.0.1, encrypt key: 0)\n"
    )
    as_json = run_hubble(["observe", "agent-events", "--server", address, "--last", "10", "-o", "json"])
    assert as_json.returncode == 0, as_json.stderr
    rows = [json.loads(line) for line in as_json.stdout.decode().splitlines()]
    assert rows[2]["agent_event"]["endpoint_update"] == {
        "id": "9",
        "labels": ["k8s:app=api"],
        "pod_name": "api",
        "namespace": "payments",
    }
    assert rows[3]["agent_event"]["ipcache_update"]["old_identity"] == 0


def test_hubble_agent_sends_agent_started():
    agent = Agent("--node-name", "events-node", "--metrics-server", "")
    try:
        out = run_hubble(["observe", "agent-events", "--server", agent.address, "--last", "5", "-o", "json"])
        assert out.returncode == 0, out.stderr
        rows = [json.loads(line) for line in out.stdout.decode().splitlines()]
        assert len(rows) == 1
        event = rows[0]["agent_event"]
        assert event["type"] == "AGENT_STARTED" and rows[0]["node_name"] == "events-node"
        assert event["agent_start"]["time"] == rows[0]["time"]
        compact = run_hubble(["observe", "agent-events", "--server", agent.address, "--last", "5"])
        assert compact.returncode == 0, compact.stderr
        assert ": AGENT_STARTED (start time: " in compact.stdout.decode()
    finally:
        agent.stop()
