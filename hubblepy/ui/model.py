"""Flows -> the service map: nodes (workloads and outside entities), edges with verdict counts.

A node is a workload (``namespace/name``: the first workload of the endpoint, else its ``app`` or
``k8s-app`` label, else the pod name), kube-dns, or a reserved entity (``world``, ``host``,
``kube-apiserver``...). An edge is one (source node, destination node, destination port, L4
protocol); a reply flow counts on the edge of the request it answers (endpoints swapped, the
reply's source port as the port). Each edge counts its flows per verdict and keeps the last few
flows (as their JSON lines) for the flow table. Its state is ``dropped`` as soon as any flow was
dropped (or failed with verdict ERROR), else ``audit`` when any was AUDIT, else ``allowed``. With a
``recent`` window (``hubble ui --recent 5m``) only drops and audits whose flow time lies within the
window colour the edge, so a fixed edge turns green again; the counts always cover everything seen.

:class:`FlowMap` is not thread-safe: the server feeds and reads it from one asyncio loop.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from hubblepy.codec.timestamps import canonical_ns
from hubblepy.identities import RESERVED_IDENTITIES
from hubblepy.parser.constants import DROP_REASON_NAMES, DROP_REASON_TEXTS

_RESERVED_NAMES = {number: name for name, number in RESERVED_IDENTITIES.items()}
_WORLD_ALIASES = {"world-ipv4": "world", "world-ipv6": "world"}
_DROP_CODES = {name: code for code, name in DROP_REASON_NAMES.items()}
_L4_PROTOCOLS = ("TCP", "UDP", "SCTP", "ICMPv4", "ICMPv6")
_POLICY_KEYS = (
    ("ingress_denied_by", "ingress denied by"),
    ("egress_denied_by", "egress denied by"),
    ("ingress_allowed_by", "ingress allowed by"),
    ("egress_allowed_by", "egress allowed by"),
)
_NODE_CACHE_LIMIT = 100_000


@dataclass(frozen=True)
class MapNode:
    """A box on the map: ``kind`` is ``workload``, ``kube-dns``, ``world``, ``host``, ... or ``unknown``."""

    id: str
    label: str
    namespace: str
    kind: str

    def to_json(self) -> dict[str, str]:
        return {"id": self.id, "label": self.label, "namespace": self.namespace, "kind": self.kind}


def _label_value(labels: Iterable[str], key: str) -> str:
    for label in labels:
        source, _, rest = label.partition(":")
        name, eq, value = rest.partition("=")
        if eq and name == key and source in ("k8s", "container", "any"):
            return value
    return ""


def endpoint_node(endpoint: dict[str, Any]) -> MapNode:
    """The map node of a flow endpoint (``flow.source`` or ``flow.destination``)."""
    namespace = endpoint.get("namespace") or ""
    labels = endpoint.get("labels") or ()
    if namespace:
        if "kube-dns" in (_label_value(labels, "k8s-app"), _label_value(labels, "app")):
            return MapNode(f"{namespace}/kube-dns", "kube-dns", namespace, "kube-dns")
        workloads = endpoint.get("workloads") or ()
        name = (
            (workloads[0].get("name") if workloads else "")
            or _label_value(labels, "app")
            or _label_value(labels, "k8s-app")
            or endpoint.get("pod_name")
            or f"identity-{endpoint.get('identity', 0)}"
        )
        return MapNode(f"{namespace}/{name}", name, namespace, "workload")
    reserved = next((label[9:] for label in labels if label.startswith("reserved:")), "")
    if not reserved:
        reserved = _RESERVED_NAMES.get(int(endpoint.get("identity") or 0), "")
    reserved = _WORLD_ALIASES.get(reserved, reserved)
    if reserved:
        return MapNode(reserved, reserved, "", reserved)
    return MapNode("unknown", "unknown", "", "unknown")


def flow_l4(flow: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(protocol name, its l4 object) of a flow; ``("", {})`` without L4."""
    l4 = flow.get("l4") or {}
    for name in _L4_PROTOCOLS:
        if name in l4:
            return name, l4[name] or {}
    return "", {}


def _verdict_slot(verdict: str) -> str:
    if verdict == "FORWARDED":
        return "forwarded"
    if verdict == "DROPPED":
        return "dropped"
    if verdict == "AUDIT":
        return "audit"
    if verdict == "ERROR":
        return "error"
    return "other"


class Edge:
    """Traffic from one node to another on one port and protocol."""

    __slots__ = (
        "id", "source", "target", "port", "protocol", "counts", "last_time", "flows", "namespaces",
        "last_bad_ns", "last_audit_ns", "shown",
    )  # fmt: skip

    def __init__(
        self, edge_id: str, source: MapNode, target: MapNode, port: int, protocol: str, keep: int
    ) -> None:
        self.id = edge_id
        self.source = source
        self.target = target
        self.port = port
        self.protocol = protocol
        self.counts = {"forwarded": 0, "dropped": 0, "audit": 0, "error": 0, "other": 0}
        self.last_time = ""
        self.flows: deque[tuple[int, bytes]] = deque(maxlen=keep)
        self.namespaces = {source.namespace, target.namespace} - {""}
        self.last_bad_ns = 0  # flow time of the newest DROPPED / ERROR flow
        self.last_audit_ns = 0
        self.shown = "allowed"  # the state last handed out

    def state(self, since_ns: int = 0) -> str:
        """The colour: worst verdict seen (only flows newer than ``since_ns`` count, when given)."""
        if (self.counts["dropped"] or self.counts["error"]) and self.last_bad_ns >= since_ns:
            return "dropped"
        if self.counts["audit"] and self.last_audit_ns >= since_ns:
            return "audit"
        return "allowed"

    def to_json(self, since_ns: int = 0) -> dict[str, Any]:
        self.shown = self.state(since_ns)
        return {
            "id": self.id,
            "source": self.source.id,
            "target": self.target.id,
            "port": self.port,
            "protocol": self.protocol,
            "counts": dict(self.counts),
            "total": sum(self.counts.values()),
            "state": self.shown,
            "last": self.last_time,
        }


class FlowMap:
    """Aggregates flows into nodes and edges and remembers what changed since the last batch."""

    def __init__(self, flows_per_edge: int = 100, recent_ns: int = 0) -> None:
        self.flows_per_edge = flows_per_edge
        self.recent_ns = recent_ns  # 0: every drop ever seen keeps its edge red
        self.nodes: dict[str, MapNode] = {}
        self.edges: dict[str, Edge] = {}
        self.namespaces: Counter[str] = Counter()
        self.verdicts: Counter[str] = Counter()
        self.total = 0
        self._seq = 0
        self._dirty: set[str] = set()
        self._node_cache: dict[tuple, MapNode] = {}

    # -- feeding ---------------------------------------------------------------------------------

    def _node(self, endpoint: dict[str, Any]) -> MapNode:
        workloads = endpoint.get("workloads")
        key = (
            endpoint.get("namespace"),
            endpoint.get("pod_name"),
            endpoint.get("identity"),
            workloads[0].get("name") if workloads else None,
        )
        node = self._node_cache.get(key)
        if node is None:
            if len(self._node_cache) >= _NODE_CACHE_LIMIT:
                self._node_cache.clear()
            node = self._node_cache[key] = endpoint_node(endpoint)
        return node

    def add(self, record: dict[str, Any], raw: bytes | None = None) -> Edge | None:
        """Count one GetFlowsResponse dict (``{"flow": ...}``); returns its edge (None if not a flow)."""
        flow = record.get("flow")
        if not isinstance(flow, dict):
            return None
        src = self._node(flow.get("source") or {})
        dst = self._node(flow.get("destination") or {})
        protocol, l4 = flow_l4(flow)
        if flow.get("is_reply") is True:
            src, dst = dst, src
            port = int(l4.get("source_port") or 0)
        else:
            port = int(l4.get("destination_port") or 0)
        edge_id = f"{src.id}|{dst.id}|{port}|{protocol}"
        edge = self.edges.get(edge_id)
        if edge is None:
            edge = self.edges[edge_id] = Edge(edge_id, src, dst, port, protocol, self.flows_per_edge)
            self.nodes.setdefault(src.id, src)
            self.nodes.setdefault(dst.id, dst)
        verdict = flow.get("verdict") or "VERDICT_UNKNOWN"
        slot = _verdict_slot(verdict)
        edge.counts[slot] += 1
        if slot in ("dropped", "error"):
            edge.last_bad_ns = max(edge.last_bad_ns, canonical_ns(flow.get("time")) or time.time_ns())
        elif slot == "audit":
            edge.last_audit_ns = max(edge.last_audit_ns, canonical_ns(flow.get("time")) or time.time_ns())
        edge.last_time = flow.get("time") or edge.last_time
        self._seq += 1
        edge.flows.append((self._seq, raw if raw is not None else orjson.dumps(record)))
        self._dirty.add(edge_id)
        for namespace in edge.namespaces:
            self.namespaces[namespace] += 1
        self.verdicts[verdict] += 1
        self.total += 1
        return edge

    # -- reading ---------------------------------------------------------------------------------

    def since_ns(self) -> int:
        """Oldest flow time that still colours an edge (0: all)."""
        return time.time_ns() - self.recent_ns if self.recent_ns else 0

    def take_changes(self) -> list[Edge]:
        """The edges changed since the last call (and forget them), with those whose colour expired."""
        if self.recent_ns:
            since = self.since_ns()
            for edge in self.edges.values():
                if edge.shown != "allowed" and edge.state(since) != edge.shown:
                    self._dirty.add(edge.id)
        changed = [self.edges[edge_id] for edge_id in self._dirty]
        self._dirty = set()
        return changed

    def namespace_edges(self, namespace: str, edges: Iterable[Edge] | None = None) -> list[Edge]:
        """The edges with an end in ``namespace`` (all edges for ``""``)."""
        edges = self.edges.values() if edges is None else edges
        if not namespace:
            return list(edges)
        return [edge for edge in edges if namespace in edge.namespaces]

    def view(self, edges: list[Edge]) -> dict[str, list[dict[str, Any]]]:
        """Nodes and edges as the page receives them."""
        nodes: dict[str, MapNode] = {}
        for edge in edges:
            nodes[edge.source.id] = edge.source
            nodes[edge.target.id] = edge.target
        since = self.since_ns()
        return {"nodes": [n.to_json() for n in nodes.values()], "edges": [e.to_json(since) for e in edges]}

    def flows(self, edge_id: str = "", node_id: str = "", limit: int = 1000) -> list[dict[str, Any]]:
        """Table rows of the recent flows of an edge, or of every edge touching a node; newest first."""
        if edge_id:
            edges = [self.edges[edge_id]] if edge_id in self.edges else []
        elif node_id:
            edges = [e for e in self.edges.values() if node_id in (e.source.id, e.target.id)]
        else:
            edges = []
        items = sorted((item for edge in edges for item in edge.flows), key=lambda item: -item[0])
        return [flow_row(seq, orjson.loads(raw)) for seq, raw in items[:limit]]


# -- flow table rows ------------------------------------------------------------------------------


def endpoint_text(endpoint: dict[str, Any], ip: str) -> str:
    """How the table names one end of a flow: ``namespace/pod``, else the entity and its IP."""
    if endpoint.get("namespace") and endpoint.get("pod_name"):
        return f"{endpoint['namespace']}/{endpoint['pod_name']}"
    node = endpoint_node(endpoint)
    return f"{node.label} ({ip})" if ip else node.label


def drop_reason_text(flow: dict[str, Any]) -> str:
    """The drop reason as the monitor words it (``Policy denied``); empty for a flow not dropped."""
    desc = flow.get("drop_reason_desc")
    if desc:
        code = desc if isinstance(desc, int) else _DROP_CODES.get(desc)
        return DROP_REASON_TEXTS.get(code, str(desc)) if code is not None else str(desc)
    code = flow.get("drop_reason")
    if code and flow.get("verdict") == "DROPPED":
        return DROP_REASON_TEXTS.get(int(code), str(code))
    return ""


def policy_text(flow: dict[str, Any]) -> str:
    """The policies that decided a flow, e.g. ``ingress denied by payments/default-deny (CiliumNetworkPolicy)``."""
    parts = []
    for key, words in _POLICY_KEYS:
        policies = flow.get(key) or ()
        if policies:
            names = ", ".join(
                f"{p.get('namespace') + '/' if p.get('namespace') else ''}{p.get('name', '?')}"
                f" ({p.get('kind') or 'policy'})"
                for p in policies
            )
            parts.append(f"{words} {names}")
    return "; ".join(parts)


def l7_summary(flow: dict[str, Any]) -> str:
    """One line for an L7 flow: HTTP method, URL and code; DNS query and answers; Kafka topic."""
    l7 = flow.get("l7")
    if not isinstance(l7, dict):
        return ""
    http = l7.get("http")
    if isinstance(http, dict):
        text = f"{http.get('method', '')} {http.get('url', '')}".strip()
        if http.get("code"):
            text += f" -> {http['code']}"
        return text
    dns = l7.get("dns")
    if isinstance(dns, dict):
        text = f"DNS {','.join(dns.get('qtypes') or ())} {dns.get('query', '')}".replace("  ", " ")
        if dns.get("ips"):
            text += " -> " + ",".join(dns["ips"])
        return text
    kafka = l7.get("kafka")
    if isinstance(kafka, dict):
        return f"Kafka {kafka.get('api_key', '')} {kafka.get('topic', '')}".strip()
    return str(flow.get("Summary") or "")


def flow_row(seq: int, record: dict[str, Any]) -> dict[str, Any]:
    """One row of the flow table, with the whole record under ``json``."""
    flow = record.get("flow") or {}
    ip = flow.get("IP") or {}
    protocol, l4 = flow_l4(flow)
    port = l4.get("destination_port")
    if flow.get("is_reply") is True:
        port = l4.get("source_port")
    return {
        "seq": seq,
        "time": flow.get("time", ""),
        "source": endpoint_text(flow.get("source") or {}, ip.get("source", "")),
        "destination": endpoint_text(flow.get("destination") or {}, ip.get("destination", "")),
        "port": f"{port}/{protocol}" if port else protocol,
        "l7": l7_summary(flow),
        "verdict": flow.get("verdict", ""),
        "drop_reason": drop_reason_text(flow),
        "policy": policy_text(flow),
        "reply": flow.get("is_reply") is True,
        "json": record,
    }
