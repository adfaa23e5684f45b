"""toFQDNs in the compiler: selected identities, and the incremental path equal to a full compile."""

from __future__ import annotations

from pathlib import Path

from hubblepy.fqdn.cache import FQDNCache
from hubblepy.fqdn.matcher import FQDNSelector
from hubblepy.fqdn.names import NameManager
from hubblepy.policy import (
    EGRESS,
    CookieJar,
    Endpoint,
    IdentityAllocator,
    PolicyKey,
    parse_policies,
    pod_labels,
)
from hubblepy.policy.compiler import add_fqdn_identities, compile_policies

SEED = Path(__file__).resolve().parents[1] / "fixtures" / "seed"
FQDN_POLICY = (SEED / "api-egress-fqdn.yaml").read_text()
WORLD_POLICY = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: world, namespace: payments}
spec:
  endpointSelector: {matchLabels: {app: api}}
  egress:
    - toEntities: [world]
      toPorts: [{ports: [{port: "80", protocol: TCP}]}]
"""


class Lab:
    def __init__(self, *texts: str) -> None:
        self.ids = IdentityAllocator()
        self.policies = [p for t in texts for p in parse_policies(t)]
        api = self.ids.allocate(pod_labels("payments", {"app": "api"}))
        other = self.ids.allocate(pod_labels("payments", {"app": "other"}))
        self.ids.allocate(pod_labels("kube-system", {"k8s-app": "kube-dns"}))
        self.endpoints = [
            Endpoint(1, api, self.ids.labels_of(api)),
            Endpoint(2, other, self.ids.labels_of(other)),
        ]
        self.cookies = CookieJar()
        self.cache = FQDNCache(min_ttl=0)
        self.cache.set_endpoint(1, ["10.0.0.1"])
        self.names = NameManager(self.cache, lambda ip: self.ids.allocate_cidr(f"{ip}/32"))
        self.names.set_selectors(
            {s for p in self.policies for spec in p.specs for r in spec.egress or () for s in r.fqdns or ()}
        )

    def compile(self):
        return compile_policies(
            self.policies,
            self.endpoints,
            dict(self.ids.items()),
            self.cookies,
            fqdn_identities=self.names.identities(),
        )


def test_without_answers_tofqdns_selects_nothing_and_the_rest_applies():
    lab = Lab(FQDN_POLICY)
    compiled = lab.compile()
    assert compiled.endpoints[1].egress_enforced
    assert all(k.dport == 53 for k in compiled.entries if k.ep_id == 1)
    assert not compiled.world_peers
    assert set(compiled.fqdn_rules) == {
        FQDNSelector.name("api.stripe.com"),
        FQDNSelector.pattern("*.stripe.com"),
    }


def test_learned_ips_get_cidr_identities_and_entries_for_every_matching_selector():
    lab = Lab(FQDN_POLICY)
    compiled = lab.compile()
    added = lab.names.learn(lab.cache.update(1, "api.stripe.com", ["192.0.2.10", "192.0.2.11"], 60))
    assert len(added) == 4  # two selectors match, two IPs each
    identities = {identity for _, identity in added}
    assert {lab.ids.labels_of(i) for i in identities} == {
        ("cidr:192.0.2.10/32", "reserved:world"),
        ("cidr:192.0.2.11/32", "reserved:world"),
    }
    update = add_fqdn_identities(compiled, added)
    assert update is not None and not update.l7
    assert set(update.entries) == {PolicyKey(1, EGRESS, i, 443, 6) for i in identities}
    full = lab.compile()
    assert compiled.entries == full.entries
    assert compiled.contributors == full.contributors


def test_a_name_no_selector_matches_gets_no_identity():
    lab = Lab(FQDN_POLICY)
    assert lab.names.learn(lab.cache.update(1, "example.com", ["203.0.113.5"], 60)) == []
    assert lab.names.prefixes() == {}


CIDR_POLICY = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: metrics, namespace: payments}
spec:
  endpointSelector: {matchLabels: {app: api}}
  egress:
    - toCIDR: [198.51.100.50/32]
      toPorts: [{ports: [{port: "80", protocol: TCP}]}]
"""


def test_cidr_peers_refuse_only_the_ips_they_cover():
    lab = Lab(FQDN_POLICY, CIDR_POLICY)
    compiled = lab.compile()
    assert not compiled.world_peers and compiled.cidr_peers == ("198.51.100.50/32",)
    outside = lab.names.learn(lab.cache.update(1, "api.stripe.com", ["192.0.2.10"], 60))
    assert add_fqdn_identities(compiled, outside, lab.names.identity_ip) is not None
    assert add_fqdn_identities(compiled, outside) is None  # addresses unknown: cannot tell
    inside = lab.names.learn(lab.cache.update(1, "eu.stripe.com", ["198.51.100.50"], 60))
    assert add_fqdn_identities(compiled, inside, lab.names.identity_ip) is None
    (identity,) = {i for _, i in inside}
    assert {k.dport for k in lab.compile().entries if k.identity == identity} == {80, 443}


def test_world_peers_make_the_incremental_path_refuse():
    lab = Lab(FQDN_POLICY, WORLD_POLICY)
    compiled = lab.compile()
    assert compiled.world_peers
    added = lab.names.learn(lab.cache.update(1, "api.stripe.com", ["192.0.2.10"], 60))
    assert add_fqdn_identities(compiled, added) is None
    # the full compile gives the /32 identity both the FQDN port and the world rule's port
    (identity,) = {i for _, i in added}
    ports = {k.dport for k in lab.compile().entries if k.identity == identity}
    assert ports == {80, 443}


def test_forgetting_an_ip_unselects_it_only_when_no_other_name_maps_to_it():
    lab = Lab(FQDN_POLICY)
    lab.names.learn(lab.cache.update(1, "api.stripe.com", ["192.0.2.10"], 60))
    lab.names.learn(lab.cache.update(1, "eu.stripe.com", ["192.0.2.10"], 60))
    lab.cache.clock = lambda: 10**12
    gone = lab.cache.gc()
    assert sorted(gone) == [("api.stripe.com.", "192.0.2.10"), ("eu.stripe.com.", "192.0.2.10")]
    assert lab.names.forget(gone)
    assert lab.names.prefixes() == {}
