"""One small test per FlowFilter rule, on hand-made canonical flows (upstream hubble 1.19 semantics)."""

from __future__ import annotations

from typing import Any

import pytest

from hubblepy.filters import compile_flow_filters


def matches(ff: dict[str, Any], flow: dict[str, Any]) -> bool:
    return compile_flow_filters([ff], [])({"flow": flow})


def ep(**fields: Any) -> dict[str, Any]:
    return dict(fields)


# --- allow / deny combination ---------------------------------------------------------------------


def test_allow_is_ored_and_deny_removes() -> None:
    flows = [{"verdict": "DROPPED"}, {"verdict": "AUDIT"}, {"verdict": "FORWARDED"}]
    pred = compile_flow_filters([{"verdict": ["DROPPED"]}, {"verdict": ["AUDIT"]}], [])
    assert [pred({"flow": f}) for f in flows] == [True, True, False]
    pred = compile_flow_filters([], [{"verdict": ["AUDIT"]}])
    assert [pred({"flow": f}) for f in flows] == [True, False, True]
    pred = compile_flow_filters([{"verdict": ["DROPPED", "AUDIT"]}], [{"verdict": ["DROPPED"]}])
    assert [pred({"flow": f}) for f in flows] == [False, True, False]


def test_fields_are_anded_values_are_ored() -> None:
    ff = {"verdict": ["DROPPED", "AUDIT"], "uuid": ["a"]}
    assert matches(ff, {"uuid": "a", "verdict": "AUDIT"})
    assert not matches(ff, {"uuid": "b", "verdict": "AUDIT"})
    assert not matches(ff, {"uuid": "a", "verdict": "FORWARDED"})


def test_empty_filter_matches_everything_including_records_without_flow() -> None:
    pred = compile_flow_filters([{}], [])
    assert pred({"flow": {"verdict": "DROPPED"}})
    assert pred({"lost_events": {"num_events_lost": "3"}})
    assert pred({})


# --- records without a flow ------------------------------------------------------------------------

LOST = {
    "lost_events": {"source": "HUBBLE_RING_BUFFER", "num_events_lost": "7"},
    "time": "2024-01-01T00:00:00Z",
}


@pytest.mark.parametrize(
    "ff",
    [
        {"verdict": ["DROPPED"]},
        {"verdict": ["VERDICT_UNKNOWN"]},
        {"source_pod": ["payments/"]},
        {"event_type": [{"type": 0}]},
        {"ip_version": ["IP_NOT_USED"]},
        {"source_identity": [0]},
        {"traffic_direction": ["TRAFFIC_DIRECTION_UNKNOWN"]},
        {"uuid": [""]},
        {"encrypted": [True]},
        {"reply": [False]},
    ],
)
def test_flowless_records_fail_almost_every_allow_filter(ff: dict[str, Any]) -> None:
    assert not compile_flow_filters([ff], [])(LOST)
    assert not compile_flow_filters([ff], [])({"node_status": {"state": "NODE_ERROR"}})


def test_flowless_records_pass_unencrypted_and_deny_only() -> None:
    assert compile_flow_filters([{"encrypted": [False]}], [])(LOST)
    assert compile_flow_filters([], [{"verdict": ["DROPPED"]}])(LOST)
    assert compile_flow_filters([], [{"encrypted": [False]}])(LOST) is False
    # a negative label selector holds for "no labels", as upstream (nil flow has no labels)
    assert compile_flow_filters([{"source_label": ["!app"]}], [])(LOST)


def test_empty_flow_is_a_flow_with_default_values() -> None:
    assert matches({"verdict": ["VERDICT_UNKNOWN"]}, {})
    assert matches({"ip_version": ["IP_NOT_USED"]}, {})
    assert matches({"traffic_direction": ["TRAFFIC_DIRECTION_UNKNOWN"]}, {})


# --- simple fields ------------------------------------------------------------------------------------


def test_verdict_names_numbers_and_unknown_numbers() -> None:
    assert matches({"verdict": ["DROPPED"]}, {"verdict": "DROPPED"})
    assert matches({"verdict": [2]}, {"verdict": "DROPPED"})
    assert matches({"verdict": ["DROPPED"]}, {"verdict": 2})
    assert matches({"verdict": [42]}, {"verdict": 42})
    assert not matches({"verdict": ["FORWARDED"]}, {"verdict": "DROPPED"})


def test_drop_reason_only_for_dropped_verdict() -> None:
    ff = {"drop_reason_desc": ["POLICY_DENIED"]}
    assert matches(ff, {"verdict": "DROPPED", "drop_reason_desc": "POLICY_DENIED"})
    assert not matches(ff, {"verdict": "ERROR", "drop_reason_desc": "POLICY_DENIED"})
    assert matches({"drop_reason_desc": ["DROP_REASON_UNKNOWN"]}, {"verdict": "DROPPED"})
    assert not matches({"drop_reason_desc": ["DROP_REASON_UNKNOWN"]}, {})


def test_uuid_trace_id_interface_cluster() -> None:
    assert matches({"uuid": ["u1", "u2"]}, {"uuid": "u2"})
    flow = {"trace_context": {"parent": {"trace_id": "abc"}}}
    assert matches({"trace_id": ["abc"]}, flow)
    assert not matches({"trace_id": ["abd"]}, flow)
    iface = {"interface": {"index": 25, "name": "lxc1"}}
    assert matches({"interface": [{"name": "lxc1"}]}, iface)
    assert matches({"interface": [{"index": 25}]}, iface)
    assert not matches({"interface": [{"index": 25, "name": "eth0"}]}, iface)
    assert not matches({"interface": [{"name": "lxc1"}]}, {})
    assert matches({"source_cluster_name": ["c1"]}, {"source": ep(cluster_name="c1")})
    assert not matches({"destination_cluster_name": ["c1"]}, {"source": ep(cluster_name="c1")})


def test_ip_trace_id_is_a_64_bit_string_in_json() -> None:
    flow = {"ip_trace_id": {"trace_id": "51234", "ip_option_type": 136}}
    assert matches({"ip_trace_id": ["51234"]}, flow)
    assert matches({"ip_trace_id": [51234]}, flow)
    assert not matches({"ip_trace_id": ["51235"]}, flow)
    assert not matches({"ip_trace_id": ["51234"]}, {})


def test_traffic_direction_and_ip_version() -> None:
    assert matches({"traffic_direction": ["INGRESS"]}, {"traffic_direction": "INGRESS"})
    assert not matches({"traffic_direction": ["EGRESS"]}, {"traffic_direction": "INGRESS"})
    v6 = {"IP": {"source": "fd00::1", "ipVersion": "IPv6"}}
    assert matches({"ip_version": ["IPv6"]}, v6)
    assert not matches({"ip_version": ["IPv4"]}, v6)
    assert matches({"ip_version": ["IP_NOT_USED"]}, {"IP": {"source": "x"}})
    assert matches({"ip_version": ["IP_NOT_USED"]}, {"verdict": "DROPPED"})


def test_reply_missing_counts_as_false_only_when_dropped() -> None:
    assert matches({"reply": [True]}, {"is_reply": True})
    assert matches({"reply": [False]}, {"is_reply": False})
    assert not matches({"reply": [False]}, {"verdict": "FORWARDED"})
    assert matches({"reply": [False]}, {"verdict": "DROPPED"})
    assert not matches({"reply": [True]}, {"verdict": "DROPPED"})


def test_encrypted_missing_ip_block_is_unencrypted() -> None:
    assert matches({"encrypted": [False]}, {})
    assert matches({"encrypted": [False]}, {"IP": {"source": "1.1.1.1"}})
    assert matches({"encrypted": [True]}, {"IP": {"encrypted": True}})
    assert not matches({"encrypted": [True]}, {})


def test_identity_zero_needs_a_present_endpoint() -> None:
    assert matches({"source_identity": [0]}, {"source": {"ID": 5}})
    assert matches({"source_identity": [0]}, {"source": {}})
    assert not matches({"source_identity": [0]}, {})
    assert matches({"destination_identity": [2, 7]}, {"destination": {"identity": 7}})


def test_workloads() -> None:
    flow = {"source": {"workloads": [{"name": "api", "kind": "Deployment"}]}}
    assert matches({"source_workload": [{"name": "api"}]}, flow)
    assert matches({"source_workload": [{"kind": "Deployment"}]}, flow)
    assert matches({"source_workload": [{"name": "api", "kind": "Deployment"}]}, flow)
    assert not matches({"source_workload": [{"name": "api", "kind": "StatefulSet"}]}, flow)
    assert not matches({"destination_workload": [{"name": "api"}]}, flow)


# --- event types ---------------------------------------------------------------------------------------


def test_event_types() -> None:
    trace5 = {"event_type": {"type": 4, "sub_type": 5}}
    assert matches({"event_type": [{"type": 4}]}, trace5)
    assert matches({"event_type": [{"type": 0}]}, trace5)
    assert matches({"event_type": [{"type": 4, "match_sub_type": True, "sub_type": 5}]}, trace5)
    assert not matches({"event_type": [{"type": 4, "match_sub_type": True, "sub_type": 0}]}, trace5)
    to_endpoint = {"event_type": {"type": 4}}
    assert matches({"event_type": [{"type": 4, "match_sub_type": True}]}, to_endpoint)
    assert matches({"event_type": [{"type": 0, "match_sub_type": True, "sub_type": 5}]}, trace5)
    assert not matches({"event_type": [{"type": 0}]}, {"verdict": "DROPPED"})
    assert not matches({"event_type": [{"type": 1}, {"type": 129}]}, trace5)


# --- L4 / L7 --------------------------------------------------------------------------------------------


def test_protocols() -> None:
    tcp = {"l4": {"TCP": {"source_port": 1}}}
    http_over_tcp = {"l4": {"TCP": {}}, "l7": {"http": {"method": "GET"}}}
    icmp6 = {"l4": {"ICMPv6": {"type": 128}}}
    assert matches({"protocol": ["TCP"]}, tcp)
    assert matches({"protocol": ["tcp"]}, http_over_tcp)
    assert matches({"protocol": ["http"]}, http_over_tcp)
    assert not matches({"protocol": ["http"]}, tcp)
    assert matches({"protocol": ["icmp"]}, icmp6)
    assert matches({"protocol": ["icmpv6"]}, icmp6)
    assert not matches({"protocol": ["icmpv4"]}, icmp6)
    assert matches({"protocol": ["vrrp"]}, {"l4": {"VRRP": {}}})
    assert matches({"protocol": ["igmp", "udp"]}, {"l4": {"IGMP": {"type": 22}}})
    assert matches({"protocol": ["dns"]}, {"l7": {"dns": {"query": "a."}}})
    assert matches({"protocol": ["kafka"]}, {"l7": {"kafka": {}}})


def test_ports_only_for_tcp_udp_sctp() -> None:
    assert matches({"destination_port": ["53"]}, {"l4": {"UDP": {"destination_port": 53}}})
    assert matches({"source_port": ["0"]}, {"l4": {"SCTP": {}}})
    assert not matches({"source_port": ["0"]}, {"l4": {"ICMPv4": {}}})
    assert not matches({"source_port": ["0"]}, {})
    assert not matches({"source_port": ["53"]}, {"l4": {"UDP": {"destination_port": 53}}})


def test_tcp_flags_all_listed_must_be_set() -> None:
    synack = {"l4": {"TCP": {"flags": {"SYN": True, "ACK": True}}}}
    assert matches({"tcp_flags": [{"SYN": True}]}, synack)
    assert matches({"tcp_flags": [{"SYN": True, "ACK": True}]}, synack)
    assert not matches({"tcp_flags": [{"SYN": True, "FIN": True}]}, synack)
    assert matches({"tcp_flags": [{"FIN": True}, {"ACK": True}]}, synack)
    assert not matches({"tcp_flags": [{"SYN": True}]}, {"l4": {"TCP": {}}})


def _http(**fields: Any) -> dict[str, Any]:
    return {"l7": {"type": "REQUEST", "http": dict(fields)}}


def test_http_status_codes() -> None:
    assert matches({"http_status_code": ["503"]}, _http(code=503))
    assert matches({"http_status_code": ["5+"]}, _http(code=503))
    assert matches({"http_status_code": ["50+"]}, _http(code=503))
    assert not matches({"http_status_code": ["50+"]}, _http(code=510))
    assert not matches({"http_status_code": ["2+"]}, _http(method="GET"))


def test_http_method_case_insensitive() -> None:
    assert matches({"http_method": ["post"]}, _http(method="POST"))
    assert not matches({"http_method": ["get"]}, _http(method="POST"))
    assert not matches({"http_method": ["get"]}, _http(code=200))


def test_http_path_uses_request_uri_path() -> None:
    ff = {"http_path": ["^/v1/refunds$"]}
    assert matches(ff, _http(url="http://h:8080/v1/refunds?limit=10"))
    assert matches({"http_path": ["/a b"]}, _http(url="http://h/a%20b"))
    assert not matches({"http_path": ["refunds"]}, _http(url="v1/refunds"))  # not a request URI
    assert not matches({"http_path": ["x"]}, _http(url="http://h/%zzx"))  # bad escape
    assert matches({"http_path": ["ref"]}, _http(url="/v1/refunds"))  # unanchored
    assert not matches({"http_path": ["limit"]}, _http(url="http://h/v1?limit=1"))


def test_http_url_and_headers() -> None:
    flow = _http(url="http://h/v1?limit=1", headers=[{"key": "x-a", "value": "1"}])
    assert matches({"http_url": ["limit=1$"]}, flow)
    assert matches({"http_header": [{"key": "x-a", "value": "1"}]}, flow)
    assert not matches({"http_header": [{"key": "X-A", "value": "1"}]}, flow)
    assert not matches({"http_header": [{"key": "x-a", "value": "2"}]}, flow)


def test_dns_query_regex() -> None:
    flow = {"l7": {"dns": {"query": "api.stripe.com."}}}
    assert matches({"dns_query": [r"stripe\.com\.$"]}, flow)
    assert not matches({"dns_query": ["^stripe"]}, flow)
    assert not matches({"dns_query": ["."]}, {"l7": {"http": {}}})


# --- IPs --------------------------------------------------------------------------------------------------


def test_ip_addresses_compare_as_text() -> None:
    flow = {"IP": {"source": "fd00:10:244:1::1e", "destination": "10.8.1.5"}}
    assert matches({"source_ip": ["fd00:10:244:1::1e"]}, flow)
    assert not matches({"source_ip": ["fd00:10:244:1:0::1e"]}, flow)
    assert not matches({"source_ip": ["FD00:10:244:1::1E"]}, flow)
    assert matches({"source_ip": ["fd00:10:244:1:0::1e/128"]}, flow)
    assert matches({"destination_ip": ["10.8.0.0/16", "1.1.1.1"]}, flow)
    assert not matches({"destination_ip": ["10.9.0.0/16"]}, flow)
    assert not matches({"destination_ip": ["::ffff:10.8.1.5/128"]}, flow)
    assert not matches({"source_ip": ["10.0.0.0/8"]}, {})


def test_snat_ip() -> None:
    flow = {"IP": {"source": "10.0.0.1", "source_xlated": "192.168.1.1"}}
    assert matches({"source_ip_xlated": ["192.168.0.0/16"]}, flow)
    assert not matches({"source_ip_xlated": ["10.0.0.1"]}, flow)


# --- pods, services -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "namespace", "pod", "expected"),
    [
        ("frontend", "default", "frontend-1", True),
        ("frontend", "shop", "frontend-1", False),
        ("shop/front", "shop", "frontend-1", True),
        ("shop/", "shop", "anything", True),
        ("shop/", "other", "anything", False),
        ("/front", "any-ns", "frontend-1", True),
        ("/", "any-ns", "", True),
        ("/", "", "pod-without-namespace", True),
        ("/", "", "", False),
        ("shop/front/ignored", "shop", "frontend", True),
    ],
)
def test_pod_forms(value: str, namespace: str, pod: str, expected: bool) -> None:
    endpoint = {k: v for k, v in (("namespace", namespace), ("pod_name", pod)) if v}
    assert matches({"source_pod": [value]}, {"source": endpoint}) is expected


def test_services_use_service_namespace_and_name() -> None:
    flow = {"destination": {"namespace": "x"}, "destination_service": {"name": "api", "namespace": "shop"}}
    assert matches({"destination_service": ["shop/api"]}, flow)
    assert matches({"destination_service": ["shop/"]}, flow)
    assert not matches({"destination_service": ["x/api"]}, flow)
    assert not matches({"source_service": ["shop/"]}, flow)


# --- fqdn and node names ---------------------------------------------------------------------------------------


def test_fqdn_globs() -> None:
    flow = {"destination_names": ["api.stripe.com", "Other.EXAMPLE"]}
    assert matches({"destination_fqdn": ["api.*"]}, flow)
    assert matches({"destination_fqdn": ["*.stripe.com"]}, flow)
    assert matches({"destination_fqdn": [" API.Stripe.COM. "]}, flow)
    assert not matches({"destination_fqdn": ["api"]}, flow)
    assert not matches({"destination_fqdn": ["other.example"]}, flow)  # flow names are not lower-cased
    assert not matches({"source_fqdn": ["*"]}, flow)


def test_node_names() -> None:
    plain = {"node_name": "lab-worker2"}
    clustered = {"node_name": "prod-us/ip-10-1-4-21.us-east-2.compute.internal"}
    assert matches({"node_name": ["lab-worker*"]}, plain)
    assert matches({"node_name": ["default/lab-worker2"]}, plain)
    assert matches({"node_name": ["/lab-worker2"]}, plain)
    assert not matches({"node_name": ["prod-us/"]}, plain)
    assert matches({"node_name": ["prod-us/"]}, clustered)
    assert matches({"node_name": ["ip-10-1-4-21.*"]}, clustered)
    assert matches({"node_name": ["*/ip-10-1-4-21.*"]}, clustered)
    assert not matches({"node_name": ["lab-worker2"]}, {"node_name": "Lab-Worker2"})
    assert not matches({"node_name": ["*"]}, {})


# --- labels ---------------------------------------------------------------------------------------------------------

LABELS = {
    "source": {
        "labels": [
            "k8s:app=frontend",
            "k8s:tier=web",
            "reserved:host",
            "k8s:io.kubernetes.pod.namespace=default",
            "fqdn:api.github.com",
        ]
    },
    "node_labels": ["kubernetes.io/hostname=lab-worker", "topology.kubernetes.io/zone=zone-a"],
}


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("app=frontend", True),
        ("app==frontend", True),
        ("k8s:app=frontend", True),
        ("any:app=frontend", True),
        ("container:app=frontend", False),
        ("app!=frontend", False),
        ("app!=backend", True),
        ("missing!=x", True),
        ("app in (a, frontend)", True),
        ("app notin (a, frontend)", False),
        ("missing notin (a)", True),
        ("app", True),
        ("!app", False),
        ("!missing", True),
        ("reserved:host", True),
        ("reserved:world", False),
        ("app=frontend,tier=web", True),
        ("app=frontend,tier=db", False),
        ("io.kubernetes.pod.namespace=default", True),
        ("k8s:io.kubernetes.pod.namespace=default", True),
        ("", True),
    ],
)
def test_label_selectors(selector: str, expected: bool) -> None:
    assert matches({"source_label": [selector]}, LABELS) is expected


def test_label_selectors_on_endpoints_without_labels() -> None:
    assert matches({"destination_label": ["app!=x"]}, {})
    assert matches({"destination_label": ["!app"]}, {"destination": {}})
    assert not matches({"destination_label": ["app"]}, {})


def test_node_labels_have_unspec_source() -> None:
    assert matches({"node_labels": ["topology.kubernetes.io/zone=zone-a"]}, LABELS)
    assert matches({"node_labels": ["unspec:kubernetes.io/hostname=lab-worker"]}, LABELS)
    assert not matches({"node_labels": ["k8s:kubernetes.io/hostname=lab-worker"]}, LABELS)
    assert not matches({"node_labels": ["kubernetes.io/hostname in (x, y)"]}, LABELS)


def test_cidr_labels_match_by_containment() -> None:
    flow = {"destination": {"labels": ["cidr:10.1.2.3/32", "reserved:world"]}}
    assert matches({"destination_label": ["cidr:10.0.0.0/8"]}, flow)
    assert matches({"destination_label": ["cidr:10.1.2.3/32"]}, flow)
    assert not matches({"destination_label": ["cidr:10.1.2.0/24,!reserved:world"]}, flow)
    assert not matches({"destination_label": ["cidr:192.168.0.0/16"]}, flow)
    assert not matches(
        {"destination_label": ["cidr:10.0.0.0/8"]}, {"destination": {"labels": ["k8s:10.0.0.1/32"]}}
    )


def test_label_gt_lt() -> None:
    flow = {"source": {"labels": ["k8s:replicas=3"]}}
    assert matches({"source_label": ["replicas>2"]}, flow)
    assert not matches({"source_label": ["replicas<3"]}, flow)


# --- input spellings --------------------------------------------------------------------------------------------------


def test_camel_case_filter_keys_are_accepted() -> None:
    assert matches(
        {"sourcePod": ["shop/"], "eventType": [{"type": 4, "matchSubType": True, "subType": 5}]},
        {"source": {"namespace": "shop"}, "event_type": {"type": 4, "sub_type": 5}},
    )
