"""`hubble policy suggest`: policies from observed flows (unit cases, the CLI, and what the lab parser accepts)."""

from __future__ import annotations

import orjson
import yaml
from hubbletest import run_hubble

from hubblepy.policy.parse import parse_policies
from hubblepy.policy.suggest import suggest
from hubblepy.sample.path import sample_capture_path

NS_LABELS = [
    "k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name={ns}",
    "k8s:io.cilium.k8s.policy.cluster=default",
    "k8s:io.cilium.k8s.policy.serviceaccount=default",
    "k8s:io.kubernetes.pod.namespace={ns}",
]


def pod(ns: str, name: str, **labels: str) -> dict:
    return {
        "namespace": ns,
        "pod_name": name,
        "identity": 1000 + len(name),
        "labels": [x.format(ns=ns) for x in NS_LABELS] + [f"k8s:{k}={v}" for k, v in labels.items()],
    }


WORLD = {"identity": 2, "labels": ["reserved:world"]}
HOST = {"identity": 1, "labels": ["reserved:host"]}


def flow(src: dict, dst: dict, port: int | None, direction: str, proto: str = "TCP", **extra) -> dict:
    body = {
        "time": extra.pop("time", "2026-01-01T00:00:00Z"),
        "uuid": extra.pop("uuid", "u"),
        "verdict": extra.pop("verdict", "AUDIT"),
        "IP": {"source": extra.pop("src_ip", "10.0.0.1"), "destination": extra.pop("dst_ip", "10.0.0.2")},
        "source": src,
        "destination": dst,
        "traffic_direction": direction,
        "is_reply": extra.pop("is_reply", False),
    }
    if port is not None:
        body["l4"] = {proto: {"source_port": 40000, "destination_port": port}}
    else:
        body["l4"] = {"ICMPv4": {"type": 8}}
    body.update(extra)
    return body


def policy_by_name(result, name: str) -> dict:
    return next(p for p in result.policies if p["metadata"]["name"] == name)


def test_ingress_and_egress_rules_per_workload_without_pod_hash_labels():
    api = pod("shop", "api-7f-abc", app="api", **{"pod-template-hash": "7f"})
    web = pod("shop", "web-1", app="web")
    db = pod("data", "db-0", app="db", **{"statefulset.kubernetes.io/pod-name": "db-0"})
    result = suggest(
        [
            flow(web, api, 8080, "INGRESS", uuid="a"),
            flow(web, api, 8080, "INGRESS", uuid="b"),
            flow(api, db, 5432, "EGRESS", uuid="c"),
            flow(api, web, 9000, "EGRESS", is_reply=True),
        ]
    )
    assert result.ignored_replies == 1 and not result.unsuggested
    api_policy = policy_by_name(result, "suggested-api")
    assert api_policy["metadata"]["namespace"] == "shop"
    spec = api_policy["spec"]
    assert spec["endpointSelector"] == {"matchLabels": {"app": "api"}}
    assert spec["ingress"] == [
        {
            "fromEndpoints": [{"matchLabels": {"app": "web"}}],
            "toPorts": [{"ports": [{"port": "8080", "protocol": "TCP"}]}],
        }
    ]
    assert spec["egress"] == [
        {
            "toEndpoints": [{"matchLabels": {"app": "db", "k8s:io.kubernetes.pod.namespace": "data"}}],
            "toPorts": [{"ports": [{"port": "5432", "protocol": "TCP"}]}],
        }
    ]
    assert [p["metadata"]["name"] for p in result.policies] == ["suggested-api"]


def test_peers_with_the_same_ports_share_a_rule_and_entities_are_used_for_reserved_peers():
    api = pod("shop", "api", app="api")
    result = suggest(
        [
            flow(pod("shop", "a", app="a"), api, 80, "INGRESS"),
            flow(pod("shop", "b", app="b"), api, 80, "INGRESS"),
            flow(HOST, api, 80, "INGRESS"),
            flow(api, WORLD, 443, "EGRESS"),
            flow(api, WORLD, 53, "EGRESS", proto="UDP"),
        ]
    )
    spec = result.policies[0]["spec"]
    assert spec["ingress"] == [
        {
            "fromEndpoints": [{"matchLabels": {"app": "a"}}, {"matchLabels": {"app": "b"}}],
            "toPorts": [{"ports": [{"port": "80", "protocol": "TCP"}]}],
        },
        {"fromEntities": ["host"], "toPorts": [{"ports": [{"port": "80", "protocol": "TCP"}]}]},
    ]
    assert spec["egress"] == [
        {
            "toEntities": ["world"],
            "toPorts": [{"ports": [{"port": "53", "protocol": "UDP"}, {"port": "443", "protocol": "TCP"}]}],
        }
    ]


def test_known_dns_names_give_to_fqdns_with_the_dns_rule_they_need():
    app = pod("shop", "app", app="app")
    dns = pod("kube-system", "coredns-1", **{"k8s-app": "kube-dns"})
    answer = flow(dns, app, 51000, "EGRESS", proto="UDP", is_reply=True)
    answer["l7"] = {"type": "RESPONSE", "dns": {"query": "pay.example.com.", "ips": ["203.0.113.7"]}}
    result = suggest(
        [
            answer,
            flow(app, WORLD, 443, "EGRESS", dst_ip="203.0.113.7"),
            flow(app, WORLD, 443, "EGRESS", dst_ip="198.51.100.1", destination_names=["api.other.org"]),
        ]
    )
    egress = result.policies[0]["spec"]["egress"]
    assert {"toFQDNs": [{"matchName": "api.other.org"}, {"matchName": "pay.example.com"}],
            "toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}]}]} in egress  # fmt: skip
    assert {
        "toEndpoints": [
            {"matchLabels": {"k8s-app": "kube-dns", "k8s:io.kubernetes.pod.namespace": "kube-system"}}
        ],
        "toPorts": [
            {
                "ports": [{"port": "53", "protocol": "TCP"}, {"port": "53", "protocol": "UDP"}],
                "rules": {"dns": [{"matchName": "pay.example.com"}]},
            }
        ],
    } in egress
    assert len(result.notes) == 1 and "toFQDNs api.other.org" in result.notes[0]
    assert "# Note: shop/app=app -> toFQDNs api.other.org" in result.to_yaml()


def test_flows_that_would_need_a_broader_rule_are_listed_not_guessed():
    api = pod("shop", "api", app="api")
    bare = pod("shop", "bare")  # only the labels Cilium adds: selecting it selects the namespace
    result = suggest(
        [
            flow(bare, api, 80, "INGRESS", uuid="bare-peer"),
            flow(api, bare, 80, "INGRESS", uuid="bare-subject"),
            flow(pod("shop", "x", app="x"), api, None, "INGRESS", uuid="icmp"),
            flow(api, pod("shop", "y", app="y"), 80, "", uuid="nodir"),
        ]
    )
    assert result.policies == []
    reasons = {u.evidence.samples[0].uuid: u.reason for u in result.unsuggested}
    assert "source pod has no labels of its own" in reasons["bare-peer"]
    assert "destination pod has no labels of its own" in reasons["bare-subject"]
    assert "no TCP/UDP/SCTP destination port" in reasons["icmp"]
    assert reasons["nodir"] == "unknown traffic direction"
    text = result.to_yaml()
    assert text.startswith("# Not suggested (4 flows)") and "bare-peer" in text


def test_l7_http_rules_per_port_with_exact_paths():
    api = pod("shop", "api", app="api")
    web = pod("shop", "web", app="web")
    get = flow(web, api, 8080, "INGRESS", Type="L7")
    get["l7"] = {"type": "REQUEST", "http": {"method": "GET", "url": "http://api:8080/v1/items?id=3"}}
    post = flow(web, api, 8080, "INGRESS", Type="L7")
    post["l7"] = {"type": "REQUEST", "http": {"method": "POST", "url": "http://api:8080/v1/a.b"}}
    plain = suggest([get, post])
    assert "rules" not in plain.policies[0]["spec"]["ingress"][0]["toPorts"][0]
    with_l7 = suggest([get, post], l7=True)
    assert with_l7.policies[0]["spec"]["ingress"][0]["toPorts"] == [
        {
            "ports": [{"port": "8080", "protocol": "TCP"}],
            "rules": {
                "http": [{"method": "GET", "path": "/v1/items"}, {"method": "POST", "path": "/v1/a\\.b"}]
            },
        }
    ]


def test_explain_lists_the_flows_behind_each_rule_and_the_yaml_parses_as_policies():
    api = pod("shop", "api", app="api")
    result = suggest(
        [
            flow(pod("shop", "web", app="web"), api, 80, "INGRESS", uuid="u1", time="2026-01-01T00:00:01Z"),
            flow(api, WORLD, 443, "EGRESS", uuid="u2", time="2026-01-01T00:00:02Z"),
        ]
    )
    text = result.to_yaml(explain=True)
    assert "# ingress[0] " in text and "# egress[0] " in text
    assert "2026-01-01T00:00:01Z shop/web (web) -> shop/api (api) 80/TCP AUDIT INGRESS u1" in text
    policies = parse_policies(text, "suggested.yaml")
    assert [str(p.ref) for p in policies] == ["shop/suggested-api"]


def test_cli_on_the_sample_capture_gives_policies_the_lab_parser_accepts():
    result = run_hubble(
        ["policy", "suggest", "--input-file", sample_capture_path(), "--namespace", "payments"]
    )
    assert result.returncode == 0, result.stderr.decode()
    text = result.stdout.decode()
    names = [str(p.ref) for p in parse_policies(text, "suggested.yaml")]
    assert names == [
        "payments/suggested-api",
        "payments/suggested-frontend",
        "payments/suggested-postgres",
        "payments/suggested-probe",
    ]
    docs = list(yaml.safe_load_all(text))
    api = docs[0]["spec"]
    assert api["endpointSelector"] == {"matchLabels": {"app": "api", "tier": "backend"}}
    assert {"matchLabels": {"run": "probe"}} in api["ingress"][0]["fromEndpoints"]


def test_cli_reads_through_observe_filters_and_refuses_output_flags(tmp_path):
    lines = [
        orjson.dumps({"flow": flow(pod("a", "w", app="w"), pod("a", "s", app="s"), 80, "INGRESS", verdict=v)})
        for v in ("AUDIT", "FORWARDED")
    ]
    capture = tmp_path / "f.jsonl"
    capture.write_bytes(b"\n".join(lines) + b"\n")
    result = run_hubble(
        ["policy", "suggest", "--input-file", str(capture), "--verdict", "AUDIT", "--explain"]
    )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().count(" AUDIT INGRESS") == 1 and " FORWARDED " not in result.stdout.decode()
    bad = run_hubble(["policy", "suggest", "--input-file", str(capture), "-o", "json"])
    assert bad.returncode == 1 and "cannot be used with suggest" in bad.stderr.decode()
    missing = run_hubble(["policy", "suggest", "--input-file", str(tmp_path / "nope")])
    assert missing.returncode == 1 and "no such file" in missing.stderr.decode()


def test_evidence_is_bounded_and_repeated_flows_are_grouped():
    api = pod("shop", "api", app="api")
    web = pod("shop", "web", app="web")
    bare = pod("shop", "bare")
    flows = [
        flow(web, api, 80, "INGRESS", uuid=f"ok{i}", time=f"2026-01-01T00:00:{i:02d}Z") for i in range(50)
    ]
    flows += [
        flow(bare, api, 80, "INGRESS", uuid=f"no{i}", time=f"2026-01-01T00:01:{i:02d}Z") for i in range(30)
    ]
    result = suggest(flows)
    text = result.to_yaml(explain=True)
    assert "# ingress[0] " in text and ": 50 flow(s)" in text
    assert text.count(" ok") == 20 and "#   ... and 30 more" in text
    assert result.unsuggested_flows == 30 and len(result.unsuggested) == 1
    assert "no0 (and 29 more like it)" in text and "# Not suggested (30 flows)" in text


def test_a_dns_answer_later_in_the_input_still_names_the_address():
    app = pod("shop", "app", app="app")
    dns = pod("kube-system", "coredns-1", **{"k8s-app": "kube-dns"})
    answer = flow(dns, app, 51000, "EGRESS", proto="UDP", is_reply=True)
    answer["l7"] = {"type": "RESPONSE", "dns": {"query": "pay.example.com.", "ips": ["203.0.113.7"]}}
    result = suggest([flow(app, WORLD, 443, "EGRESS", dst_ip="203.0.113.7"), answer])
    egress = result.policies[0]["spec"]["egress"]
    assert {"toFQDNs": [{"matchName": "pay.example.com"}],
            "toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}]}]} in egress  # fmt: skip
    assert any("rules" in item for rule in egress for item in rule["toPorts"])
