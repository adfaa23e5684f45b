"""`hubble policy audit-report` from files: grouping, counts, first/last seen, JSON and errors."""

from __future__ import annotations

import json

import orjson
from hubbletest import run_hubble

from hubblepy.policy.audit import AuditReport


def _audit_flow(time: str, src: str, dst: str, port: int, policy: str | None = None) -> dict:
    ns_s, pod_s = src.split("/")
    ns_d, pod_d = dst.split("/")
    flow = {
        "time": time,
        "verdict": "AUDIT",
        "IP": {"source": "10.244.0.10", "destination": "10.244.0.11", "ipVersion": "IPv4"},
        "l4": {"TCP": {"source_port": 40000, "destination_port": port}},
        "source": {"identity": 300, "namespace": ns_s, "pod_name": pod_s},
        "destination": {"ID": 101, "identity": 301, "namespace": ns_d, "pod_name": pod_d},
        "Type": "L3_L4",
        "event_type": {"type": 5},
        "traffic_direction": "INGRESS",
    }
    if policy:
        flow["ingress_denied_by"] = [{"name": policy, "namespace": ns_d, "kind": "CiliumNetworkPolicy"}]
        flow["policy_log"] = [f"audit (policy {ns_d}/{policy}): default deny: ..."]
    return flow


def test_report_groups_counts_and_orders_by_time_whatever_the_fraction_digits():
    report = AuditReport()
    assert report.add(
        _audit_flow("2026-01-01T10:00:01Z", "default/probe", "payments/api", 8080, "default-deny")
    )
    assert report.add(_audit_flow("2026-01-01T10:00:00.5Z", "default/probe", "payments/api", 8080))
    assert report.add(_audit_flow("2026-01-01T10:00:02.25Z", "default/probe", "payments/api", 8080))
    assert report.add(_audit_flow("2026-01-01T10:00:03Z", "default/probe", "payments/api", 5432))
    assert not report.add({**_audit_flow("2026-01-01T10:00:04Z", "a/b", "c/d", 1), "verdict": "DROPPED"})
    groups = report.groups()
    assert [(g.port, g.count) for g in groups] == [("TCP/8080", 3), ("TCP/5432", 1)]
    top = groups[0]
    assert (top.first_seen, top.last_seen) == ("2026-01-01T10:00:00.5Z", "2026-01-01T10:00:02.25Z")
    assert top.policies == ["payments/default-deny (CiliumNetworkPolicy)"]
    text = report.table()
    assert text.splitlines()[0].split() == [
        "SOURCE",
        "DESTINATION",
        "PORT",
        "DIRECTION",
        "COUNT",
        "FIRST",
        "SEEN",
        "LAST",
        "SEEN",
        "WOULD",
        "BE",
        "DENIED",
        "BY",
    ]
    assert "4 audited flows in 2 groups would be dropped" in text


def test_cli_reads_a_file_and_prints_json(tmp_path, fixtures_dir):
    path = tmp_path / "audit.jsonl"
    lines = [
        orjson.dumps({"flow": _audit_flow(f"2026-01-01T10:00:0{i}Z", "default/probe", "payments/api", 8080)})
        for i in range(3)
    ]
    # the upstream fixture flows go along: its AUDIT flows count, the others do not
    path.write_bytes(b"\n".join(lines) + b"\n" + (fixtures_dir / "flows.jsonl").read_bytes())
    upstream_audits = sum(
        1 for line in (fixtures_dir / "flows.jsonl").read_bytes().splitlines() if b'"verdict":"AUDIT"' in line
    )
    out = run_hubble(["policy", "audit-report", "--input-file", str(path), "-o", "json"])
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["audited_flows"] == 3 + upstream_audits
    top = report["groups"][0]
    assert (top["source"], top["destination"], top["port"], top["count"]) == (
        "default/probe",
        "payments/api",
        "TCP/8080",
        3,
    )
    assert (top["first_seen"], top["last_seen"]) == ("2026-01-01T10:00:00Z", "2026-01-01T10:00:02Z")
    only = run_hubble(["policy", "audit-report", "--input-file", str(path), "--namespace", "payments"])
    assert (
        only.returncode == 0
        and "default/probe" in only.stdout.decode()
        and "cde/cde-gateway" not in only.stdout.decode()
    )


def test_cli_errors_are_one_line():
    missing = run_hubble(["policy", "audit-report", "--input-file", "/nonexistent/flows.json"])
    assert missing.returncode == 1
    assert (
        missing.stderr.decode() == "hubble policy: open /nonexistent/flows.json: no such file or directory\n"
    )
    bad = run_hubble(["policy", "audit-report", "--input-file", "-", "-o", "yaml"], stdin=b"")
    assert bad.returncode == 1 and bad.stderr.decode().startswith("hubble policy: unknown output format")
    garbage = run_hubble(["policy", "audit-report", "--input-file", "-"], stdin=b"{not json\n")
    assert garbage.returncode == 1 and garbage.stderr.decode().startswith("hubble policy: -: line 1:")
    assert len(garbage.stderr.decode().splitlines()) == 1


def _workload_flow(time: str, pod: str, workload: str, **extra: object) -> dict:
    flow = _audit_flow(time, f"payments/{pod}", "payments/api", 8080)
    flow["source"]["workloads"] = [{"name": workload, "kind": "Deployment"}]
    flow.update(extra)
    return flow


def test_groups_by_workload_by_default_and_by_pod_on_request():
    flows = [
        _workload_flow("2026-01-01T10:00:00Z", "frontend-7d9c5b8f6-x2k4p", "frontend"),
        _workload_flow("2026-01-01T10:00:01Z", "frontend-7d9c5b8f6-zz9q1", "frontend"),
    ]
    by_workload = AuditReport()
    by_pod = AuditReport(by="pod")
    for flow in flows:
        by_workload.add(flow)
        by_pod.add(flow)
    assert [(g.source, g.count) for g in by_workload.groups()] == [("payments/frontend", 2)]
    assert [(g.source, g.count) for g in by_pod.groups()] == [
        ("payments/frontend-7d9c5b8f6-x2k4p", 1),
        ("payments/frontend-7d9c5b8f6-zz9q1", 1),
    ]


def _egress(time: str, ip: str, port: int, names: list[str] | None = None) -> dict:
    flow = _workload_flow("2026-01-01T10:00:00Z", "frontend-1", "frontend", traffic_direction="EGRESS")
    flow["time"] = time
    flow["IP"]["destination"] = ip
    flow["l4"]["TCP"]["destination_port"] = port
    flow["destination"] = {"identity": 2, "labels": ["reserved:world"]}
    if names:
        flow["destination_names"] = names
    return flow


def test_external_destinations_are_summed_up_by_name_when_known():
    report = AuditReport()
    report.add(_egress("2026-01-01T10:00:00Z", "203.0.113.7", 443, ["api.stripe.com"]))
    report.add(_egress("2026-01-01T10:00:05Z", "203.0.113.8", 443, ["api.stripe.com"]))
    report.add(_egress("2026-01-01T10:00:06Z", "198.51.100.1", 443))
    report.add(_audit_flow("2026-01-01T10:00:07Z", "default/probe", "payments/api", 8080))  # in-cluster
    external = [e.to_json() for e in report.external()]
    assert external == [
        {
            "destination": "api.stripe.com",
            "port": "TCP/443",
            "by_name": True,
            "count": 2,
            "sources": ["payments/frontend"],
            "first_seen": "2026-01-01T10:00:00Z",
            "last_seen": "2026-01-01T10:00:05Z",
        },
        {
            "destination": "198.51.100.1",
            "port": "TCP/443",
            "by_name": False,
            "count": 1,
            "sources": ["payments/frontend"],
            "first_seen": "2026-01-01T10:00:06Z",
            "last_seen": "2026-01-01T10:00:06Z",
        },
    ]
    text = report.table()
    assert "Audited egress leaving the cluster" in text
    assert "api.stripe.com  TCP/443  2      payments/frontend" in text
    assert report.to_json()["external_destinations"] == external


def test_cli_csv_has_a_header_and_no_match_fails_saying_so(tmp_path):
    path = tmp_path / "audit.jsonl"
    flows = [
        _workload_flow("2026-01-01T10:00:00Z", "frontend-1", "frontend"),
        _audit_flow("2026-01-01T10:00:01Z", "default/probe", "payments/api", 8080, "default-deny"),
    ]
    path.write_bytes(b"".join(orjson.dumps({"flow": flow}) + b"\n" for flow in flows))
    out = run_hubble(["policy", "audit-report", "--input-file", str(path), "-o", "csv"])
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode().splitlines() == [
        "source,destination,port,direction,count,first_seen,last_seen,would_be_denied_by",
        "default/probe,payments/api,TCP/8080,INGRESS,1,2026-01-01T10:00:01Z,2026-01-01T10:00:01Z,"
        "payments/default-deny (CiliumNetworkPolicy)",
        "payments/frontend,payments/api,TCP/8080,INGRESS,1,2026-01-01T10:00:00Z,2026-01-01T10:00:00Z,",
    ]
    by_pod = run_hubble(["policy", "audit-report", "--input-file", str(path), "--by", "pod", "-o", "csv"])
    assert "payments/frontend-1,payments/api" in by_pod.stdout.decode()
    none = run_hubble(["policy", "audit-report", "--input-file", str(path), "--namespace", "cde"])
    assert (none.returncode, none.stdout) == (1, b"")
    assert none.stderr.decode() == (
        f"hubble policy: no flow with verdict AUDIT matched (namespace cde) in 2 flows read from {path}: "
        "nothing to report, and no evidence about what enforcement would drop\n"
    )
    bad = run_hubble(["policy", "audit-report", "--input-file", str(path), "--by", "node"])
    assert bad.returncode == 1 and bad.stderr.decode().startswith("hubble policy: unknown grouping --by")
