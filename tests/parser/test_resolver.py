"""Endpoint resolution rules (as Hubble's L3/L4 parser applies them) through StaticResolver, and its caching."""

from __future__ import annotations

import pytest

from hubblepy.parser import (
    DnsNameResolver,
    EndpointInfo,
    NamesAndServices,
    Parser,
    ServiceResolver,
    StaticResolver,
)
from hubblepy.parser import encode as enc
from hubblepy.parser.constants import RESERVED_IDENTITY_LABELS
from hubblepy.parser.resolver import labels_from_mapping

NOW = 1_700_000_000_000_000_000


def trace(src: str, dst: str, src_label: int = 0, dst_label: int = 0) -> bytes:
    return enc.trace_event(
        enc.ethernet(enc.ipv4(src, dst, 17, enc.udp(1000, 53))), src_label=src_label, dst_label=dst_label
    )


def endpoints(parser: Parser, data: bytes) -> tuple[dict, dict]:
    flow = parser.decode(0, data, NOW)
    assert flow is not None
    return flow["source"], flow["destination"]


def test_reserved_identities_have_their_labels() -> None:
    parser = Parser(StaticResolver())
    for identity, labels in RESERVED_IDENTITY_LABELS.items():
        src, _ = endpoints(parser, trace("192.0.2.1", "192.0.2.2", src_label=identity))
        assert src == {"identity": identity, "labels": sorted(labels)}
    assert RESERVED_IDENTITY_LABELS[7] == ("reserved:kube-apiserver", "reserved:remote-node")


def test_datapath_identity_wins_over_endpoint_identity_but_labels_stay_the_endpoints() -> None:
    r = StaticResolver()
    r.add_endpoint(EndpointInfo(id=5, identity=1000, labels=("k8s:b=2", "k8s:a=1"), ips=("10.0.0.5",)))
    src, _ = endpoints(Parser(r), trace("10.0.0.5", "10.0.0.6", src_label=2000))
    assert src == {"ID": 5, "identity": 2000, "labels": ["k8s:a=1", "k8s:b=2"]}


def test_ipcache_entry_gets_namespace_pod_and_identity_labels() -> None:
    r = StaticResolver()
    r.set_ipcache("10.1.0.9", 7000, namespace="kube-system", pod_name="coredns-1")
    r.set_identity(7000, ["k8s:k8s-app=kube-dns", "k8s:io.cilium.k8s.policy.cluster=c1"])
    r.set_identity(7001, ["k8s:k8s-app=other"])
    parser = Parser(r)
    _, dst = endpoints(parser, trace("10.0.0.5", "10.1.0.9"))
    assert dst == {
        "identity": 7000,
        "cluster_name": "c1",
        "namespace": "kube-system",
        "labels": ["k8s:io.cilium.k8s.policy.cluster=c1", "k8s:k8s-app=kube-dns"],
        "pod_name": "coredns-1",
    }
    # A non-zero datapath identity picks the labels of that identity, not the ipcache one's.
    _, dst = endpoints(parser, trace("10.0.0.5", "10.1.0.9", dst_label=7001))
    assert dst["identity"] == 7001
    assert dst["labels"] == ["k8s:k8s-app=other"]


def test_local_scope_identity_keeps_only_longest_cidr_label() -> None:
    r = StaticResolver()
    cidr_identity = (1 << 24) | 5
    r.set_identity(cidr_identity, ["cidr:10.0.0.0/8", "cidr:10.1.0.0/16", "reserved:world", "cidr:0.0.0.0/0"])
    src, _ = endpoints(Parser(r), trace("10.1.2.3", "10.0.0.6", src_label=cidr_identity))
    assert src == {"identity": cidr_identity, "labels": ["cidr:10.1.0.0/16", "reserved:world"]}


def test_unknown_ip_and_identity_give_empty_endpoint() -> None:
    src, dst = endpoints(Parser(StaticResolver()), trace("198.51.100.1", "198.51.100.2", src_label=123456))
    assert src == {"identity": 123456}
    assert dst == {}


def test_cache_follows_resolver_generation() -> None:
    r = StaticResolver()
    parser = Parser(r)
    data = trace("10.0.0.5", "10.0.0.6")
    assert endpoints(parser, data)[0] == {}
    r.add_endpoint(EndpointInfo(id=5, identity=1000, namespace="ns", pod_name="p", ips=("10.0.0.5",)))
    assert endpoints(parser, data)[0] == {"ID": 5, "identity": 1000, "namespace": "ns", "pod_name": "p"}
    r.remove_endpoint(5)
    assert endpoints(parser, data)[0] == {}


def test_flows_share_cached_endpoint_dicts() -> None:
    r = StaticResolver()
    r.add_endpoint(EndpointInfo(id=5, identity=1000, ips=("10.0.0.5",)))
    flows = Parser(r).decode_batch([(0, trace("10.0.0.5", "10.0.0.6"))] * 2, NOW)
    assert flows[0]["source"] is flows[1]["source"]
    assert flows[0]["uuid"] != flows[1]["uuid"]


def test_static_resolver_lookups() -> None:
    r = StaticResolver()
    r.add_endpoint(EndpointInfo(id=5, identity=1000, ips=("10.0.0.5", "fd00::5")))
    r.set_cgroup(11, ["10.0.0.5", "fd00::5"])
    assert r.endpoint_by_id(5).identity == 1000
    assert r.endpoint_by_ip("fd00::5").id == 5
    assert r.endpoint_by_ip("10.9.9.9") is None
    assert r.endpoint_ip_by_cgroup(11, ipv6=True) == "fd00::5"
    assert r.endpoint_ip_by_cgroup(11, ipv6=False) == "10.0.0.5"
    assert r.endpoint_ip_by_cgroup(12, ipv6=False) is None
    assert r.identity_labels(2) == ("reserved:world",)
    assert r.identity_labels(1000) == ()
    assert r.interface_name(3) == ""
    assert r.policy_for_verdict(0, 5, True, 2, 6, 80) is None


@pytest.mark.parametrize(
    ("mapping", "expected"),
    [({"app": "api", "flag": ""}, ("k8s:app=api", "k8s:flag")), ({}, ())],
)
def test_labels_from_mapping(mapping: dict[str, str], expected: tuple[str, ...]) -> None:
    assert labels_from_mapping("k8s", mapping) == expected


def test_dns_names_and_services_fill_their_fields_in_order() -> None:
    r = StaticResolver()
    r.add_endpoint(EndpointInfo(id=5, identity=1000, ips=("10.0.0.5",)))
    r.set_dns_names(5, "140.82.121.6", ["api.github.com"])
    r.set_service("140.82.121.6", 443, "github", "external")
    r.set_service("10.96.0.10", 0, "kube-dns", "kube-system")
    packet = enc.ethernet(enc.ipv4("10.0.0.5", "140.82.121.6", 6, enc.tcp(40000, 443, enc.TCP_SYN)))
    flow = Parser(r).decode(0, enc.trace_event(packet, source=5), NOW)
    assert flow["destination_names"] == ["api.github.com"]
    assert "source_names" not in flow
    assert flow["destination_service"] == {"name": "github", "namespace": "external"}
    keys = list(flow)
    assert keys.index("Type") < keys.index("destination_names") < keys.index("event_type")
    assert keys.index("event_type") < keys.index("destination_service") < keys.index("traffic_direction")
    dns = enc.ethernet(enc.ipv4("10.0.0.5", "10.96.0.10", 17, enc.udp(5353, 53)))
    assert Parser(r).decode(0, enc.trace_event(dns), NOW)["destination_service"]["name"] == "kube-dns"


class _CoreOnly:
    """A resolver with the core lookups only: no DNS names, no services."""

    generation = 0

    def __init__(self) -> None:
        self._inner = StaticResolver()
        self._inner.add_endpoint(EndpointInfo(id=5, identity=1000, ips=("10.0.0.5",)))
        self.endpoint_by_id = self._inner.endpoint_by_id
        self.endpoint_by_ip = self._inner.endpoint_by_ip
        self.identity_labels = self._inner.identity_labels
        self.interface_name = self._inner.interface_name
        self.endpoint_ip_by_cgroup = self._inner.endpoint_ip_by_cgroup
        self.policy_for_verdict = self._inner.policy_for_verdict


def test_optional_extensions_are_typed_protocols() -> None:
    assert isinstance(StaticResolver(), NamesAndServices)
    assert isinstance(StaticResolver(), DnsNameResolver)
    assert isinstance(StaticResolver(), ServiceResolver)
    core = _CoreOnly()
    assert not isinstance(core, DnsNameResolver)
    assert not isinstance(core, ServiceResolver)
    # a resolver without the extensions still decodes; the name and service fields stay empty
    packet = enc.ethernet(enc.ipv4("10.0.0.5", "140.82.121.6", 6, enc.tcp(40000, 443, enc.TCP_SYN)))
    flow = Parser(core).decode(0, enc.trace_event(packet, source=5), NOW)
    assert flow is not None
    assert flow["source"] == {"ID": 5, "identity": 1000}
    assert not {"source_names", "destination_names", "source_service", "destination_service"} & set(flow)
