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


@dataclass
class Justification:
    """One flow that a rule allows, in a short readable form."""

    time: str
    text: str
    uuid: str


@dataclass
class Unsuggested:
    reason: str
    flow: Justification


@dataclass
class Suggestion:
    """The policies (YAML-ready dicts) with, per rule, the flows behind it, and what was not suggested."""

    policies: list[dict[str, Any]] = field(default_factory=list)
    explanations: list[list[tuple[str, list[Justification]]]] = field(default_factory=list)
    unsuggested: list[Unsuggested] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    connections: int = 0
    ignored_replies: int = 0

    def to_yaml(self, explain: bool = False, max_flows: int = 20) -> str:
        parts = []
        for index, policy in enumerate(self.policies):
            text = yaml.safe_dump(policy, sort_keys=False, default_flow_style=False)
            if explain:
                lines = []
                for rule, flows in self.explanations[index]:
                    lines.append(f"# {rule}: {len(flows)} flow(s)")
                    lines += [f"#   {j.time} {j.text} {j.uuid}".rstrip() for j in flows[:max_flows]]
                    if len(flows) > max_flows:
                        lines.append(f"#   ... and {len(flows) - max_flows} more")
                text += "\n".join(lines) + "\n"
            parts.append(text)
        body = "---\n".join(parts)
        if self.notes:
            body += ("\n" if body else "") + "".join(f"# Note: {note}\n" for note in self.notes)
        if self.unsuggested:
            lines = [
                f"# Not suggested ({len(self.unsuggested)} flows): a rule for them would be broader than the "
                "evidence; write it by hand if it is wanted."
            ]
            for item in self.unsuggested:
                lines.append(
                    f"#   {item.reason}: {item.flow.time} {item.flow.text} {item.flow.uuid}".rstrip()
                )
            body += ("\n" if body else "") + "\n".join(lines) + "\n"
        return body


class _Rules:
    """Collected allows of one workload in one direction: peer -> port keys -> justifying flows."""

    def __init__(self) -> None:
        self.ports: dict[Peer, dict[tuple[int, str], list[Justification]]] = defaultdict(dict)
        self.http: dict[tuple[Peer, int, str], set[tuple[str, str]]] = defaultdict(set)

    def add(self, peer: Peer, port: int, protocol: str, why: Justification) -> None:
        self.ports[peer].setdefault((port, protocol), []).append(why)


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


def _dns_names(flows: list[dict[str, Any]]) -> tuple[dict[str, set[str]], dict[str, Workload]]:
    """IP -> DNS names from DNS answers (and the DNS server that gave them, by source pod workload)."""
    names: dict[str, set[str]] = defaultdict(set)
    servers: dict[str, Workload] = {}
    for flow in flows:
        dns = (flow.get("l7") or {}).get("dns") or {}
        query = (dns.get("query") or "").rstrip(".")
        if not query or not dns.get("ips"):
            continue
        server = flow.get("source") or {}
        server_labels = _identity_labels(server)
        for ip in dns["ips"]:
            names[ip].add(query)
            if server_labels and server.get("namespace"):
                servers[query] = Workload(server["namespace"], server_labels)
    return names, servers


def suggest(flows: list[dict[str, Any]], l7: bool = False) -> Suggestion:
    """The policies that allow the connections of ``flows`` (see the module documentation)."""
    result = Suggestion()
    ip_names, dns_servers = _dns_names(flows)
    rules: dict[tuple[Workload, str], _Rules] = defaultdict(_Rules)
    dns_needed: dict[Workload, dict[Workload, set[str]]] = defaultdict(lambda: defaultdict(set))
    for flow in flows:
        if _is_reply(flow):
            result.ignored_replies += 1
            continue
        why = _justification(flow)
        direction = _direction(flow)
        if direction not in ("INGRESS", "EGRESS"):
            result.unsuggested.append(Unsuggested("unknown traffic direction", why))
            continue
        subject_side, peer_side = (
            ("destination", "source") if direction == "INGRESS" else ("source", "destination")
        )
        subject_ep = flow.get(subject_side) or {}
        subject_labels = _identity_labels(subject_ep)
        if not subject_ep.get("namespace") or not subject_labels:
            what = (
                f"{subject_side} pod has no labels of its own"
                if subject_ep.get("namespace")
                else (f"{subject_side} is not a pod")
            )
            result.unsuggested.append(Unsuggested(f"{what} (selecting it would select more)", why))
            continue
        port = _l4(flow)
        if port is None:
            result.unsuggested.append(
                Unsuggested("no TCP/UDP/SCTP destination port (ICMP is not suggested)", why)
            )
            continue
        subject = Workload(subject_ep["namespace"], subject_labels)
        peer_ep = flow.get(peer_side) or {}
        peer = _peer(flow, peer_ep, peer_side, direction, ip_names)
        if peer is None:
            reason = (
                f"{peer_side} pod has no labels of its own (selecting it would select its whole namespace)"
                if peer_ep.get("namespace")
                else f"{peer_side} has no identity to select"
            )
            result.unsuggested.append(Unsuggested(reason, why))
            continue
        result.connections += 1
        bucket = rules[(subject, direction)]
        bucket.add(peer, port[0], port[1], why)
        if peer.kind == "fqdns":
            server = dns_servers.get(peer.name)
            if server is not None:
                dns_needed[subject][server].add(peer.name)
            else:
                note = (
                    f"{subject.text()} -> toFQDNs {peer.name}: no DNS answer for it was among the flows, so the "
                    "DNS server is unknown and no DNS rule was added; toFQDNs needs one (egress to your DNS "
                    "server on port 53 with rules.dns)"
                )
                if note not in result.notes:
                    result.notes.append(note)
        http = (flow.get("l7") or {}).get("http")
        if l7 and http and (flow.get("l7") or {}).get("type", "REQUEST") == "REQUEST":
            path = urlsplit(http.get("url", "")).path or "/"
            bucket.http[(peer, port[0], port[1])].add(
                (http.get("method", "GET"), _REGEX_SPECIAL.sub(r"\\\1", path))
            )
    for subject, servers in dns_needed.items():
        bucket = rules[(subject, "EGRESS")]
        for server, names in servers.items():
            peer = Peer("endpoints", workload=server)
            for proto in ("UDP", "TCP"):
                bucket.ports[peer].setdefault((DNS_PORT, proto), []).append(
                    Justification("", f"DNS lookups of {', '.join(sorted(names))} (needed by toFQDNs)", "")
                )
            bucket.http[(peer, -1, "dns")] |= {("dns", name) for name in names}
    _build_policies(result, rules)
    return result


def _peer(
    flow: dict[str, Any], ep: dict[str, Any], side: str, direction: str, ip_names: dict[str, set[str]]
) -> Peer | None:
    labels = _identity_labels(ep)
    if ep.get("namespace"):
        return Peer("endpoints", workload=Workload(ep["namespace"], labels)) if labels else None
    entity = _entity(ep)
    if entity.startswith("world") and direction == "EGRESS":
        names = list(flow.get(f"{side}_names") or [])
        names += sorted(ip_names.get((flow.get("IP") or {}).get(side, ""), ()))
        if names:
            return Peer("fqdns", name=names[0].rstrip("."))
    return Peer("entities", entity=entity) if entity else None


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
        explanations: list[tuple[str, list[Justification]]] = []
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
                flows = [j for peer in peers for port in bucket.ports[peer].values() for j in port]
                flows.sort(key=lambda j: j.time)
                explanations.append((f"{key}[{index}] {_rule_text(rule)}", flows))
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
