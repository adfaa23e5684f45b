"""The service map's aggregation: nodes, edges per (source, destination, port, protocol), table rows."""

from __future__ import annotations

import orjson
from hubbletest import REPO_ROOT

from hubblepy.ui.model import FlowMap, drop_reason_text, endpoint_node, flow_row, l7_summary, policy_text

SAMPLE = REPO_ROOT / "hubblepy" / "sample" / "payments-sample.jsonl"


def _pod(ns: str, pod: str, labels: list[str] | None = None, workload: str = "") -> dict:
    out = {"identity": 1234, "namespace": ns, "labels": labels or [], "pod_name": pod}
    if workload:
        out["workloads"] = [{"name": workload, "kind": "Deployment"}]
    return out


def _flow(
    src: dict, dst: dict, verdict: str = "FORWARDED", *, sport=40000, dport=8080, reply=None, **extra
) -> dict:
    flow = {
        "time": "2026-03-01T00:00:00Z",
        "verdict": verdict,
        "l4": {"TCP": {"source_port": sport, "destination_port": dport}},
        "source": src,
        "destination": dst,
        **extra,
    }
    if reply is not None:
        flow["is_reply"] = reply
    return {"flow": flow}


FRONTEND = _pod("payments", "frontend-7d9c5b8f6-x2k4p", ["k8s:app=frontend"], "frontend")
API = _pod("payments", "api-5c8d7f9b4-q7w2e", ["k8s:app=api"], "api")
PROBE = _pod("default", "probe")


def test_endpoint_nodes_name_workloads_kube_dns_and_reserved_entities():
    assert endpoint_node(FRONTEND).id == "payments/frontend"
    assert endpoint_node(_pod("payments", "postgres-0", ["k8s:app=postgres"])).label == "postgres"
    assert endpoint_node(PROBE).id == "default/probe"
    dns = endpoint_node(_pod("kube-system", "coredns-1", ["k8s:k8s-app=kube-dns"], "coredns"))
    assert (dns.id, dns.label, dns.kind) == ("kube-system/kube-dns", "kube-dns", "kube-dns")
    world = endpoint_node({"identity": 2, "labels": ["reserved:world"]})
    assert (world.id, world.namespace, world.kind) == ("world", "", "world")
    assert endpoint_node({"identity": 9}).id == "world"  # world-ipv4 is drawn as world
    assert endpoint_node({"identity": 1}).kind == "host"
    assert endpoint_node({}).id == "unknown"


def test_replies_count_on_the_request_edge_and_states_follow_the_worst_verdict():
    fm = FlowMap()
    edge = fm.add(_flow(FRONTEND, API))
    assert edge is not None and edge.id == "payments/frontend|payments/api|8080|TCP"
    assert fm.add(_flow(API, FRONTEND, sport=8080, dport=40000, reply=True)) is edge
    assert edge.counts["forwarded"] == 2 and edge.state() == "allowed"
    fm.add(_flow(FRONTEND, API, "AUDIT"))
    assert edge.state() == "audit"
    fm.add(_flow(FRONTEND, API, "DROPPED"))
    assert edge.state() == "dropped"
    other = fm.add(_flow(PROBE, API, "ERROR"))
    assert other.state() == "dropped" and other.to_json()["total"] == 1
    assert fm.add({"node_status": {}}) is None
    assert fm.total == 5 and fm.namespaces == {"payments": 5, "default": 1}


def test_changes_are_handed_out_once_and_filtered_by_namespace():
    fm = FlowMap()
    fm.add(_flow(FRONTEND, API))
    fm.add(_flow(PROBE, API, "DROPPED"))
    changed = fm.take_changes()
    assert len(changed) == 2 and fm.take_changes() == []
    assert [e.source.id for e in fm.namespace_edges("default")] == ["default/probe"]
    assert len(fm.namespace_edges("payments")) == 2 and len(fm.namespace_edges("")) == 2
    view = fm.view(fm.namespace_edges("default"))
    assert {n["id"] for n in view["nodes"]} == {"default/probe", "payments/api"}
    assert view["edges"][0]["state"] == "dropped"


def test_each_edge_keeps_its_newest_flows_for_the_table():
    fm = FlowMap(flows_per_edge=3)
    for port in range(5):
        fm.add(_flow(FRONTEND, API, sport=50000 + port))
    fm.add(_flow(PROBE, API, "DROPPED"))
    rows = fm.flows(edge_id="payments/frontend|payments/api|8080|TCP")
    assert [r["json"]["flow"]["l4"]["TCP"]["source_port"] for r in rows] == [50004, 50003, 50002]
    by_node = fm.flows(node_id="payments/api", limit=2)
    assert [r["verdict"] for r in by_node] == ["DROPPED", "FORWARDED"]
    assert fm.flows(edge_id="nope") == [] and fm.flows() == []


def test_rows_word_drop_reasons_policies_and_l7():
    deny = [{"name": "default-deny", "namespace": "payments", "kind": "CiliumNetworkPolicy"}]
    record = _flow(PROBE, API, "DROPPED", drop_reason_desc="POLICY_DENIED", ingress_denied_by=deny)
    row = flow_row(7, record)
    assert row["drop_reason"] == "Policy denied"
    assert row["policy"] == "ingress denied by payments/default-deny (CiliumNetworkPolicy)"
    assert (row["source"], row["destination"], row["port"]) == (
        "default/probe",
        "payments/api-5c8d7f9b4-q7w2e",
        "8080/TCP",
    )
    assert row["json"] is record and row["seq"] == 7
    assert drop_reason_text({"verdict": "DROPPED", "drop_reason": 133}) == "Policy denied"
    assert drop_reason_text({"verdict": "FORWARDED"}) == ""
    allow = [{"name": "allow-dns", "kind": "CiliumClusterwideNetworkPolicy"}]
    assert (
        policy_text({"egress_allowed_by": allow})
        == "egress allowed by allow-dns (CiliumClusterwideNetworkPolicy)"
    )
    http = {"l7": {"type": "RESPONSE", "http": {"code": 403, "method": "POST", "url": "http://api/x"}}}
    assert l7_summary(http) == "POST http://api/x -> 403"
    dns = {"l7": {"dns": {"query": "api.payments.svc.cluster.local.", "ips": ["10.0.0.1"], "qtypes": ["A"]}}}
    assert l7_summary(dns) == "DNS A api.payments.svc.cluster.local. -> 10.0.0.1"
    world = flow_row(
        1, {"flow": {"source": {"identity": 2}, "destination": API, "IP": {"source": "192.0.2.10"}}}
    )
    assert world["source"] == "world (192.0.2.10)"


def test_the_sample_capture_makes_the_payments_map():
    fm = FlowMap()
    for line in SAMPLE.read_bytes().splitlines():
        fm.add(orjson.loads(line), line)
    states = {(e.source.id, e.target.id, e.port, e.protocol): e.state() for e in fm.edges.values()}
    assert states == {
        ("payments/frontend", "kube-system/kube-dns", 53, "UDP"): "allowed",
        ("payments/frontend", "payments/api", 8080, "TCP"): "dropped",  # the L7 policy's denied POST
        ("payments/api", "payments/postgres", 5432, "TCP"): "allowed",
        ("payments/probe", "payments/api", 8080, "TCP"): "dropped",
    }
    assert fm.total == 78 == sum(sum(e.counts.values()) for e in fm.edges.values())


def test_with_a_recent_window_old_drops_stop_colouring_the_edge():
    import time

    def at(record: dict, ns: int) -> dict:
        from hubblepy.codec.timestamps import format_ns

        record["flow"]["time"] = format_ns(ns)
        return record

    now = time.time_ns()
    fm = FlowMap(recent_ns=60 * 10**9)
    edge = fm.add(at(_flow(FRONTEND, API, "DROPPED"), now - 120 * 10**9))  # two minutes ago
    fm.add(at(_flow(FRONTEND, API), now))
    assert fm.view([edge])["edges"][0]["state"] == "allowed"
    assert edge.counts == {"forwarded": 1, "dropped": 1, "audit": 0, "error": 0, "other": 0}
    fm.take_changes()
    fm.add(at(_flow(FRONTEND, API, "DROPPED"), now))
    assert fm.view(fm.take_changes())["edges"][0]["state"] == "dropped"
    # once the drop is older than the window the edge is handed out again, green
    fm.recent_ns = 1
    assert [e.id for e in fm.take_changes()] == [edge.id]
    assert fm.view([edge])["edges"][0]["state"] == "allowed"
    assert fm.take_changes() == []
    # without a window any drop ever seen keeps it red
    fm.recent_ns = 0
    assert fm.view([edge])["edges"][0]["state"] == "dropped"
