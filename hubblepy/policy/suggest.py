"""The smallest CiliumNetworkPolicy set that allows exactly the connections seen in a set of flows.

Input: flows (``hubble observe -o json`` records), typically the AUDIT or DROPPED verdicts of an
audit period. Each flow that opens a connection (not a reply) is placed on the side where it was
judged, by its ``traffic_direction``: INGRESS needs an ingress rule on the destination workload,
EGRESS an egress rule on the source workload.

* The selected workload (``endpointSelector``) is its identity labels minus the labels Cilium adds
  (namespace, namespace labels, cluster, service account) and pod-hash labels
  (``pod-template-hash`` and friends); one policy per workload, in its namespace.
* A peer that is a pod becomes ``fromEndpoints``/``toEndpoints`` with the same kind of labels, plus
  the namespace label when it lives in another namespace. A reserved peer becomes
  ``fromEntities``/``toEntities`` (``world``, ``host``, ``remote-node``, ``kube-apiserver``...).
  A world peer whose DNS name is known (the flow's ``destination_names``, or a DNS answer seen in the
  same flows) becomes ``toFQDNs`` ``matchName``, plus an egress rule to the DNS server that answered,
  with a ``dns`` rule for those names (toFQDNs only works when the DNS proxy sees the lookups).
* ``toPorts`` lists each destination port and protocol seen; with ``l7=True`` a port on which HTTP
  requests were seen also gets ``http`` rules (method and exact path, as a regular expression).
* Peers with the same ports share one rule, so the set stays small.

A flow is not guessed at when its rule would have to be broader than the evidence: a workload or peer
pod with no labels of its own (only its namespace would select it), no port (ICMP, no L4), or an
unknown direction. Those are returned in :attr:`Suggestion.unsuggested` with the reason.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import yaml

from hubblepy.policy.labels import CLUSTER_KEY, NAMESPACE_KEY, NAMESPACE_LABEL_PREFIX, SERVICE_ACCOUNT_KEY

# Labels that carry no workload identity of their own.
_ADDED_KEYS = {NAMESPACE_KEY, CLUSTER_KEY, SERVICE_ACCOUNT_KEY}
_POD_HASH_KEYS = {
    "pod-template-hash",
    "controller-revision-hash",
    "pod-template-generation",
    "statefulset.kubernetes.io/pod-name",
    "apps.kubernetes.io/pod-index",
    "controller-uid",
    "batch.kubernetes.io/controller-uid",
}
# Reserved identities -> the entity that selects them (most specific first).
_ENTITY_ORDER = (
    "kube-apiserver",
    "host",
    "remote-node",
    "health",
    "init",
    "ingress",
    "unmanaged",
    "world-ipv4",
    "world-ipv6",
    "world",
)
_RESERVED_IDENTITIES = {
    1: "host",
    2: "world",
    3: "unmanaged",
    4: "health",
    5: "init",
    6: "remote-node",
    7: "kube-apiserver",
    8: "ingress",
    9: "world-ipv4",
    10: "world-ipv6",
}
_PROTOCOLS = {"TCP", "UDP", "SCTP"}
_REGEX_SPECIAL = re.compile(r"([.^$*+?()\[\]{}|\\])")
DNS_PORT = 53


@dataclass(frozen=True, slots=True)
class Workload:
    """A pod workload by namespace and the labels that select it (sorted key/value pairs)."""

    namespace: str
    labels: tuple[tuple[str, str], ...]

    def selector(self, policy_namespace: str) -> dict[str, Any]:
        labels = dict(self.labels)
        if self.namespace != policy_namespace:
            labels[f"k8s:{NAMESPACE_KEY}"] = self.namespace
        return {"matchLabels": labels}

    def text(self) -> str:
        return f"{self.namespace}/" + ",".join(f"{k}={v}" for k, v in self.labels)


@dataclass(frozen=True, slots=True)
class Peer:
    """Who is on the other side: a workload, an entity, or DNS names."""

    kind: str  # "endpoints", "entities" or "fqdns"
    workload: Workload | None = None
    entity: str = ""
    name: str = ""

    def sort_key(self) -> tuple:
        return (self.kind, self.workload.text() if self.workload else "", self.entity, self.name)


@dataclass(frozen=True, slots=True)
class PortKey:
    port: int
    protocol: str
    http: tuple[tuple[str, str], ...] = ()  # (method, path regex), sorted


MAX_SAMPLES = 20  # flows kept per rule (or per not-suggested group) to show with --explain


@dataclass
class Justification:
    """One flow that a rule allows, in a short readable form."""

    time: str
    text: str
    uuid: str


@dataclass
class Evidence:
    """How many flows back something, and the first few of them."""

    count: int = 0
    samples: list[Justification] = field(default_factory=list)

    def add(self, why: Justification) -> None:
        self.count += 1
        if len(self.samples) < MAX_SAMPLES:
            self.samples.append(why)

    def merge(self, other: Evidence) -> None:
        self.count += other.count
        self.samples = sorted(self.samples + other.samples, key=lambda j: j.time)[:MAX_SAMPLES]


@dataclass
class Unsuggested:
    """Flows of one kind (reason, endpoints, port) that no rule was suggested for."""

    reason: str
    what: str
    evidence: Evidence


@dataclass
class Suggestion:
    """The policies (YAML-ready dicts) with, per rule, the flows behind it, and what was not suggested."""

    policies: list[dict[str, Any]] = field(default_factory=list)
    explanations: list[list[tuple[str, Evidence]]] = field(default_factory=list)
    unsuggested: list[Unsuggested] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    connections: int = 0
    ignored_replies: int = 0

    @property
    def unsuggested_flows(self) -> int:
        return sum(item.evidence.count for item in self.unsuggested)

    def to_yaml(self, explain: bool = False) -> str:
        parts = []
        for index, policy in enumerate(self.policies):
            text = yaml.safe_dump(policy, sort_keys=False, default_flow_style=False)
            if explain:
                lines = []
                for rule, evidence in self.explanations[index]:
                    lines.append(f"# {rule}: {evidence.count} flow(s)")
                    lines += [f"#   {j.time} {j.text} {j.uuid}".rstrip() for j in evidence.samples]
                    if evidence.count > len(evidence.samples):
                        lines.append(f"#   ... and {evidence.count - len(evidence.samples)} more")
                text += "\n".join(lines) + "\n"
            parts.append(text)
        body = "---\n".join(parts)
        if self.notes:
            body += ("\n" if body else "") + "".join(f"# Note: {note}\n" for note in self.notes)
        if self.unsuggested:
            lines = [
                f"# Not suggested ({self.unsuggested_flows} flows): a rule for them would be broader than the "
                "evidence; write it by hand if it is wanted."
            ]
            for item in self.unsuggested:
                first = item.evidence.samples[0]
                more = f" (and {item.evidence.count - 1} more like it)" if item.evidence.count > 1 else ""
                lines.append(f"#   {item.reason}: {first.time} {first.text} {first.uuid}{more}".rstrip())
            body += ("\n" if body else "") + "\n".join(lines) + "\n"
        return body


class _Rules:
    """Collected allows of one workload in one direction: peer -> port keys -> the flows behind them."""

    def __init__(self) -> None:
        self.ports: dict[Peer, dict[tuple[int, str], Evidence]] = defaultdict(dict)
        self.http: dict[tuple[Peer, int, str], set[tuple[str, str]]] = defaultdict(set)

    def evidence(self, peer: Peer, port: int, protocol: str) -> Evidence:
        return self.ports[peer].setdefault((port, protocol), Evidence())


def _identity_labels(ep: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """The workload's own k8s labels (no Cilium-added, namespace or pod-hash labels)."""
    out = {}
    for text in ep.get("labels") or []:
        source, sep, rest = text.partition(":")
        if not sep or source not in ("k8s", "container", "any"):
            continue
        key, _, value = rest.partition("=")
        if key in _ADDED_KEYS or key in _POD_HASH_KEYS or key.startswith(NAMESPACE_LABEL_PREFIX):
            continue
        out[key] = value
    return tuple(sorted(out.items()))


def _entity(ep: dict[str, Any]) -> str:
    reserved = set()
    for text in ep.get("labels") or []:
        source, sep, rest = text.partition(":")
        if sep and source == "reserved":
            reserved.add(rest.partition("=")[0])
        elif sep and source in ("cidr", "fqdn"):
            reserved.add("world")
    for name in _ENTITY_ORDER:
        if name in reserved:
            return name
    identity = ep.get("identity")
    if isinstance(identity, int) and identity in _RESERVED_IDENTITIES and not ep.get("namespace"):
        return _RESERVED_IDENTITIES[identity]
    if identity and not ep.get("namespace") and not ep.get("labels") and isinstance(identity, int):
        # a CIDR identity (16777217 and up) without labels: outside the cluster
        return "world" if identity >= 1 << 24 else ""
    return ""


def _l4(flow: dict[str, Any]) -> tuple[int, str] | None:
    for proto, body in (flow.get("l4") or {}).items():
        if proto in _PROTOCOLS and isinstance(body, dict) and body.get("destination_port"):
            return int(body["destination_port"]), proto
    return None


def _is_reply(flow: dict[str, Any]) -> bool:
    reply = flow.get("is_reply")
    if reply is not None:
        return bool(reply)
    l7 = flow.get("l7") or {}
    if l7.get("type") == "RESPONSE":
        return True
    tcp = (flow.get("l4") or {}).get("TCP") or {}
    flags = tcp.get("flags") or {}
    return bool(flags.get("SYN") and flags.get("ACK"))


def _direction(flow: dict[str, Any]) -> str:
    """The flow's traffic direction; for trace events without one, the side of the pod it was seen at."""
    direction = flow.get("traffic_direction", "")
    if direction in ("INGRESS", "EGRESS"):
        return direction
    point = flow.get("trace_observation_point", "")
    if point == "FROM_ENDPOINT":
        return "EGRESS"
    if point == "TO_ENDPOINT":
        return "INGRESS"
    return ""


def _justification(flow: dict[str, Any]) -> Justification:
    from hubblepy.evidence.summary import endpoint_text, port_text

    src, dst = endpoint_text(flow, "source"), endpoint_text(flow, "destination")
    pods = [
        (flow.get(side) or {}).get("pod_name", "") for side in ("source", "destination")
    ]  # the pods themselves, for the reader
    who = (
        f"{src}" + (f" ({pods[0]})" if pods[0] else "") + f" -> {dst}" + (f" ({pods[1]})" if pods[1] else "")
    )
    http = ((flow.get("l7") or {}).get("http")) or {}
    l7 = f" {http.get('method', '')} {urlsplit(http.get('url', '')).path}" if http else ""
    return Justification(
        time=flow.get("time", ""),
        text=f"{who} {port_text(flow)}{l7} {flow.get('verdict', '')} {flow.get('traffic_direction', '')}",
        uuid=flow.get("uuid", ""),
    )


@dataclass(frozen=True, slots=True)
class _WorldKey:
    """An egress to a world address, kept until every DNS answer has been seen."""

    subject: Workload
    ip: str
    port: int
    protocol: str
    names: tuple[str, ...]
    entity: str


class Suggester:
    """Reads flows one at a time (:meth:`add`) with bounded memory; :meth:`finish` makes the policies.

    Egresses to the world wait for the end, since the DNS answer that names their address may come
    later in the input.
    """

    def __init__(self, l7: bool = False) -> None:
        self.l7 = l7
        self.result = Suggestion()
        self.ip_names: dict[str, set[str]] = defaultdict(set)
        self.dns_servers: dict[str, Workload] = {}
        self.rules: dict[tuple[Workload, str], _Rules] = defaultdict(_Rules)
        self.world: dict[_WorldKey, Evidence] = {}
        self.unsuggested: dict[tuple[str, str], Unsuggested] = {}

    def add(self, flow: dict[str, Any]) -> None:
        self._learn_dns(flow)
        if _is_reply(flow):
            self.result.ignored_replies += 1
            return
        why = _justification(flow)
        direction = _direction(flow)
        if direction not in ("INGRESS", "EGRESS"):
            self._skip("unknown traffic direction", why)
            return
        subject_side, peer_side = (
            ("destination", "source") if direction == "INGRESS" else ("source", "destination")
        )
        subject_ep = flow.get(subject_side) or {}
        subject_labels = _identity_labels(subject_ep)
        if not subject_ep.get("namespace") or not subject_labels:
            what = (
                f"{subject_side} pod has no labels of its own"
                if subject_ep.get("namespace")
                else f"{subject_side} is not a pod"
            )
            self._skip(f"{what} (selecting it would select more)", why)
            return
        port = _l4(flow)
        if port is None:
            self._skip("no TCP/UDP/SCTP destination port (ICMP is not suggested)", why)
            return
        subject = Workload(subject_ep["namespace"], subject_labels)
        peer_ep = flow.get(peer_side) or {}
        self.result.connections += 1
        if not peer_ep.get("namespace"):
            entity = _entity(peer_ep)
            if entity.startswith("world") and direction == "EGRESS":
                key = _WorldKey(
                    subject,
                    (flow.get("IP") or {}).get(peer_side, ""),
                    port[0],
                    port[1],
                    tuple(n.rstrip(".") for n in flow.get(f"{peer_side}_names") or []),
                    entity,
                )
                self.world.setdefault(key, Evidence()).add(why)
                return
            if not entity:
                self.result.connections -= 1
                self._skip(f"{peer_side} has no identity to select", why)
                return
            peer = Peer("entities", entity=entity)
        else:
            labels = _identity_labels(peer_ep)
            if not labels:
                self.result.connections -= 1
                self._skip(
                    f"{peer_side} pod has no labels of its own (selecting it would select its whole namespace)",
                    why,
                )
                return
            peer = Peer("endpoints", workload=Workload(peer_ep["namespace"], labels))
        bucket = self.rules[(subject, direction)]
        bucket.evidence(peer, port[0], port[1]).add(why)
        l7 = flow.get("l7") or {}
        http = l7.get("http")
        if self.l7 and http and l7.get("type", "REQUEST") == "REQUEST":
            path = urlsplit(http.get("url", "")).path or "/"
            bucket.http[(peer, port[0], port[1])].add(
                (http.get("method", "GET"), _REGEX_SPECIAL.sub(r"\\\1", path))
            )

    def _learn_dns(self, flow: dict[str, Any]) -> None:
        """IP -> DNS names from DNS answers, and the DNS server (workload) that gave them."""
        dns = (flow.get("l7") or {}).get("dns") or {}
        query = (dns.get("query") or "").rstrip(".")
        if not query or not dns.get("ips"):
            return
        server = flow.get("source") or {}
        server_labels = _identity_labels(server)
        for ip in dns["ips"]:
            self.ip_names[ip].add(query)
        if server_labels and server.get("namespace"):
            self.dns_servers[query] = Workload(server["namespace"], server_labels)

    def _skip(self, reason: str, why: Justification) -> None:
        what = why.text.rsplit(" ", 2)[0]  # endpoints and port, without verdict and direction
        item = self.unsuggested.get((reason, what))
        if item is None:
            item = self.unsuggested[(reason, what)] = Unsuggested(reason, what, Evidence())
        item.evidence.add(why)

    def finish(self) -> Suggestion:
        result = self.result
        dns_needed: dict[Workload, dict[Workload, set[str]]] = defaultdict(lambda: defaultdict(set))
        for key, evidence in self.world.items():
            names = list(key.names) + sorted(self.ip_names.get(key.ip, ()))
            peer = Peer("fqdns", name=names[0]) if names else Peer("entities", entity=key.entity)
            self.rules[(key.subject, "EGRESS")].evidence(peer, key.port, key.protocol).merge(evidence)
            if peer.kind != "fqdns":
                continue
            server = self.dns_servers.get(peer.name)
            if server is not None:
                dns_needed[key.subject][server].add(peer.name)
                continue
            note = (
                f"{key.subject.text()} -> toFQDNs {peer.name}: no DNS answer for it was among the flows, so "
                "the DNS server is unknown and no DNS rule was added; toFQDNs needs one (egress to your DNS "
                "server on port 53 with rules.dns)"
            )
            if note not in result.notes:
                result.notes.append(note)
        for subject, servers in dns_needed.items():
            bucket = self.rules[(subject, "EGRESS")]
            for server, looked_up in servers.items():
                peer = Peer("endpoints", workload=server)
                for proto in ("UDP", "TCP"):
                    bucket.evidence(peer, DNS_PORT, proto).add(
                        Justification(
                            "", f"DNS lookups of {', '.join(sorted(looked_up))} (needed by toFQDNs)", ""
                        )
                    )
                bucket.http[(peer, -1, "dns")] |= {("dns", name) for name in looked_up}
        result.unsuggested = sorted(self.unsuggested.values(), key=lambda u: u.evidence.samples[0].time)
        _build_policies(result, self.rules)
        return result


def suggest(flows: Iterable[dict[str, Any]], l7: bool = False) -> Suggestion:
    """The policies that allow the connections of ``flows`` (see the module documentation)."""
    suggester = Suggester(l7=l7)
    for flow in flows:
        suggester.add(flow)
    return suggester.finish()


def _policy_name(subject: Workload, taken: set[tuple[str, str]]) -> str:
    labels = dict(subject.labels)
    base = (
        labels.get("app")
        or labels.get("k8s-app")
        or labels.get("app.kubernetes.io/name")
        or subject.labels[0][1]
    )
    base = re.sub(r"[^a-z0-9-]+", "-", f"suggested-{base}".lower()).strip("-")[:240]
    name, n = base, 2
    while (subject.namespace, name) in taken:
        name, n = f"{base}-{n}", n + 1
    taken.add((subject.namespace, name))
    return name


def _build_policies(result: Suggestion, rules: dict[tuple[Workload, str], _Rules]) -> None:
    subjects = sorted({s for s, _ in rules}, key=lambda w: w.text())
    taken: set[tuple[str, str]] = set()
    for subject in subjects:
        spec: dict[str, Any] = {"endpointSelector": {"matchLabels": dict(subject.labels)}}
        explanations: list[tuple[str, Evidence]] = []
        for direction, key in (("INGRESS", "ingress"), ("EGRESS", "egress")):
            bucket = rules.get((subject, direction))
            if bucket is None:
                continue
            spec[key] = []
            # Peers with the same ports (and L7 rules) share one rule.
            groups: dict[tuple, list[Peer]] = defaultdict(list)
            for peer, ports in bucket.ports.items():
                port_keys = tuple(
                    sorted(
                        (
                            PortKey(port, proto, tuple(sorted(bucket.http.get((peer, port, proto), ()))))
                            for port, proto in ports
                        ),
                        key=lambda k: (k.port, k.protocol, k.http),
                    )
                )
                dns = tuple(sorted(name for _, name in bucket.http.get((peer, -1, "dns"), ())))
                groups[(peer.kind, port_keys, dns)].append(peer)
            for (kind, port_keys, dns), peers in sorted(
                groups.items(), key=lambda g: (g[0][0], str(g[0][1:]))
            ):
                peers.sort(key=Peer.sort_key)
                rule = _rule(kind, peers, port_keys, dns, subject.namespace, direction)
                index = len(spec[key])
                spec[key].append(rule)
                evidence = Evidence()
                for peer in peers:
                    for port_evidence in bucket.ports[peer].values():
                        evidence.merge(port_evidence)
                explanations.append((f"{key}[{index}] {_rule_text(rule)}", evidence))
        policy = {
            "apiVersion": "cilium.io/v2",
            "kind": "CiliumNetworkPolicy",
            "metadata": {"name": _policy_name(subject, taken), "namespace": subject.namespace},
            "spec": spec,
        }
        result.policies.append(policy)
        result.explanations.append(explanations)


def _rule(
    kind: str,
    peers: list[Peer],
    port_keys: tuple[PortKey, ...],
    dns: tuple[str, ...],
    namespace: str,
    direction: str,
) -> dict[str, Any]:
    ingress = direction == "INGRESS"
    rule: dict[str, Any] = {}
    if kind == "endpoints":
        rule["fromEndpoints" if ingress else "toEndpoints"] = [
            p.workload.selector(namespace) for p in peers if p.workload is not None
        ]
    elif kind == "entities":
        rule["fromEntities" if ingress else "toEntities"] = [p.entity for p in peers]
    else:
        rule["toFQDNs"] = [{"matchName": p.name} for p in peers]
    to_ports: list[dict[str, Any]] = []
    dns_ports = [k for k in port_keys if dns and k.port == DNS_PORT and not k.http]
    plain = [k for k in port_keys if not k.http and k not in dns_ports]
    if plain:
        to_ports.append({"ports": [{"port": str(k.port), "protocol": k.protocol} for k in plain]})
    if dns_ports:
        to_ports.append(
            {
                "ports": [{"port": str(k.port), "protocol": k.protocol} for k in dns_ports],
                "rules": {"dns": [{"matchName": name} for name in dns]},
            }
        )
    for k in port_keys:
        if k.http:
            to_ports.append(
                {
                    "ports": [{"port": str(k.port), "protocol": k.protocol}],
                    "rules": {"http": [{"method": m, "path": p} for m, p in k.http]},
                }
            )
    rule["toPorts"] = to_ports
    return rule


def _rule_text(rule: dict[str, Any]) -> str:
    return yaml.safe_dump(rule, default_flow_style=True, sort_keys=False, width=10_000).strip()
