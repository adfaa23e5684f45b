"""Realistic synthetic flows in canonical `hubble observe -o json` form.

Used for the sample capture shipped with the package (the seed's payments story), for the replay
source's demo data and for the benchmarks' large input files. Flows are built as canonical dicts
(keys in declaration order, enums as names, 64-bit integers as strings) and encoded with the codec,
so every line is exactly what upstream hubble would print for it.
"""

from __future__ import annotations

import functools
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from hubblepy.codec.timestamps import format_ns

NODE_LABELS = {
    "lab-worker": ["kubernetes.io/hostname=lab-worker", "topology.kubernetes.io/zone=zone-a"],
    "lab-worker2": ["kubernetes.io/hostname=lab-worker2", "topology.kubernetes.io/zone=zone-b"],
}


@dataclass(frozen=True)
class Pod:
    """A pod as flows show it: endpoint id, identity, namespace, name, labels and IP."""

    namespace: str
    name: str
    app: str
    identity: int
    endpoint_id: int
    ip: str
    workload: str = ""
    extra_labels: tuple[str, ...] = field(default_factory=tuple)

    def endpoint(self) -> dict:
        labels = [
            f"k8s:app={self.app}",
            f"k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name={self.namespace}",
            "k8s:io.cilium.k8s.policy.cluster=default",
            f"k8s:io.cilium.k8s.policy.serviceaccount={self.app}",
            f"k8s:io.kubernetes.pod.namespace={self.namespace}",
            *self.extra_labels,
        ]
        out: dict = {
            "ID": self.endpoint_id,
            "identity": self.identity,
            "cluster_name": "default",
            "namespace": self.namespace,
            "labels": sorted(labels),
            "pod_name": self.name,
        }
        if self.workload:
            out["workloads"] = [{"name": self.workload, "kind": "Deployment"}]
        return out


PAYMENTS = [
    Pod("payments", "frontend-7d9c5b8f6-x2k4p", "frontend", 24810, 1201, "10.244.1.21", "frontend"),
    Pod("payments", "api-5c8d7f9b4-q7w2e", "api", 31877, 1202, "10.244.1.22", "api", ("k8s:tier=backend",)),
    Pod("payments", "postgres-0", "postgres", 40519, 1203, "10.244.1.23", "", ("k8s:tier=data",)),
]
PROBE = Pod("payments", "probe", "", 0, 1204, "10.244.1.30")
KUBE_DNS = Pod("kube-system", "coredns-76f75df574-tx9vj", "kube-dns", 18522, 1011, "10.244.0.5", "coredns")
OTHER_PODS = [
    Pod("default", "loadgen-64d5c8b7f-3mnb8", "loadgen", 27555, 2101, "10.244.2.40", "loadgen"),
    Pod("default", "kafka-0", "kafka", 27001, 2102, "10.244.2.41", "", ("k8s:tier=queue",)),
    Pod("shop", "web-7f8d9c6b5-abcde", "web", 52001, 2201, "10.244.2.50", "web"),
    Pod("shop", "cart-6d5c4b3a2-fghij", "cart", 52002, 2202, "10.244.2.51", "cart", ("k8s:tier=backend",)),
    Pod("cde", "cardholder-vault-0", "cardholder-data", 33001, 2301, "10.244.3.10", ""),
    Pod("cde", "tokenizer-6a7b8c9d0-j8k7l", "tokenizer", 33002, 2302, "10.244.3.11", "tokenizer"),
    Pod("monitoring", "prometheus-0", "prometheus", 45001, 2401, "10.244.3.20", ""),
]


def _probe_endpoint() -> dict:
    return {
        "ID": PROBE.endpoint_id,
        "identity": 60001,
        "cluster_name": "default",
        "namespace": "payments",
        "labels": [
            "k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=payments",
            "k8s:io.cilium.k8s.policy.cluster=default",
            "k8s:io.cilium.k8s.policy.serviceaccount=default",
            "k8s:io.kubernetes.pod.namespace=payments",
            "k8s:run=probe",
        ],
        "pod_name": PROBE.name,
    }


_TCP_FLAG_ORDER = ("SYN", "ACK", "RST", "FIN", "PSH", "URG", "ECE", "CWR", "NS")
_TCP_FLAG_JSON_ORDER = ("FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR", "NS")


def _tcp(sport: int, dport: int, flags: tuple[str, ...]) -> tuple[dict, str]:
    l4 = {
        "TCP": {
            "source_port": sport,
            "destination_port": dport,
            "flags": {f: True for f in _TCP_FLAG_JSON_ORDER if f in flags},
        }
    }
    summary = "TCP Flags: " + ", ".join(f for f in _TCP_FLAG_ORDER if f in flags)
    return l4, summary


class FlowFactory:
    """Builds canonical GetFlowsResponse dicts with a moving clock."""

    def __init__(self, seed: int = 1, start_ns: int = 1_772_323_200_000_000_000) -> None:
        self.rng = random.Random(seed)
        self.now_ns = start_ns

    def tick(self, max_ms: float = 40.0) -> None:
        self.now_ns += int(self.rng.uniform(0.05, max_ms) * 1_000_000)

    def stamp(self) -> str:
        return format_ns(self.now_ns)

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def flow(
        self,
        src: dict,
        dst: dict,
        src_ip: str,
        dst_ip: str,
        *,
        node: str,
        verdict: str,
        l4: dict | None,
        summary: str,
        event_type: dict,
        is_reply: bool | None = None,
        direction: str = "",
        match_type: int = 0,
        obs_point: str = "",
        drop_reason: int = 0,
        drop_desc: str = "",
        l7: dict | None = None,
        flow_type: str = "L3_L4",
        dst_service: dict | None = None,
        allowed_by: list[dict] | None = None,
        denied_by: list[dict] | None = None,
        interface: dict | None = None,
    ) -> dict:
        stamp = self.stamp()
        flow: dict = {"time": stamp, "uuid": self._uuid(), "emitter": {"name": "Hubble", "version": "1.19.4"}}
        flow["verdict"] = verdict
        if drop_reason:
            flow["drop_reason"] = drop_reason
        flow["IP"] = {"source": src_ip, "destination": dst_ip, "ipVersion": "IPv4"}
        if l4 is not None:
            flow["l4"] = l4
        flow["source"] = src
        flow["destination"] = dst
        flow["Type"] = flow_type
        flow["node_name"] = node
        flow["node_labels"] = NODE_LABELS[node]
        if l7 is not None:
            flow["l7"] = l7
        flow["event_type"] = event_type
        if dst_service is not None:
            flow["destination_service"] = dst_service
        if direction:
            flow["traffic_direction"] = direction
        if match_type:
            flow["policy_match_type"] = match_type
        if obs_point:
            flow["trace_observation_point"] = obs_point
        if drop_desc:
            flow["drop_reason_desc"] = drop_desc
        if is_reply is not None:
            flow["is_reply"] = is_reply
        if interface is not None:
            flow["interface"] = interface
        flow["Summary"] = summary
        if direction == "EGRESS":
            if allowed_by:
                flow["egress_allowed_by"] = allowed_by
            if denied_by:
                flow["egress_denied_by"] = denied_by
        elif direction == "INGRESS":
            if allowed_by:
                flow["ingress_allowed_by"] = allowed_by
            if denied_by:
                flow["ingress_denied_by"] = denied_by
        return {"flow": flow, "node_name": node, "time": stamp}


def _policy(name: str, namespace: str, kind: str = "CiliumNetworkPolicy") -> dict:
    labels = [
        f"k8s:io.cilium.k8s.policy.derived-from={kind}",
        f"k8s:io.cilium.k8s.policy.name={name}",
        f"k8s:io.cilium.k8s.policy.namespace={namespace}",
        "k8s:io.cilium.k8s.policy.uid=5e1f0c6a-6b3d-4c1e-9f2a-1d2c3b4a5f60",
    ]
    return {"name": name, "namespace": namespace, "labels": labels, "revision": "7", "kind": kind}


def tcp_conversation(
    factory: FlowFactory,
    client: Pod | dict,
    server: Pod,
    port: int,
    *,
    node: str = "lab-worker",
    denied: bool = False,
    audit: bool = False,
    http: tuple[str, str, int] | None = None,
    policy: str = "api-allow",
    direction: str = "INGRESS",
) -> Iterator[dict]:
    """The flows of one TCP connection as the datapath and proxy report them."""
    src = client.endpoint() if isinstance(client, Pod) else client
    src_ip = client.ip if isinstance(client, Pod) else PROBE.ip
    dst = server.endpoint()
    sport = factory.rng.randint(32768, 60999)
    svc = {"name": server.app, "namespace": server.namespace} if server.workload else None
    to_server = functools.partial(
        factory.flow, src, dst, src_ip, server.ip, node=node, is_reply=False, dst_service=svc
    )
    to_client = functools.partial(factory.flow, dst, src, server.ip, src_ip, node=node, is_reply=True)
    l4, summary = _tcp(sport, port, ("SYN",))
    factory.tick()
    yield to_server(
        verdict="FORWARDED",
        l4=l4,
        summary=summary,
        event_type={"type": 4, "sub_type": 5},
        obs_point="FROM_ENDPOINT",
        interface={"index": 11, "name": "lxc" + src_ip.split(".")[-1]},
    )
    if denied and not audit:
        factory.tick(2)
        yield to_server(
            verdict="DROPPED",
            l4=l4,
            summary=summary,
            event_type={"type": 5},
            direction=direction,
            denied_by=[_policy("default-deny", server.namespace)],
            drop_reason=133,
        )
        factory.tick(2)
        yield to_server(
            verdict="DROPPED",
            l4=l4,
            summary=summary,
            event_type={"type": 1, "sub_type": 133},
            drop_reason=133,
            drop_desc="POLICY_DENIED",
            direction=direction,
        )
        return
    factory.tick(2)
    yield to_server(
        verdict="AUDIT" if audit else "FORWARDED",
        l4=l4,
        summary=summary,
        event_type={"type": 5},
        direction=direction,
        match_type=0 if audit else 2,
        allowed_by=None if audit else [_policy(policy, server.namespace)],
    )
    factory.tick(1)
    yield to_server(
        verdict="FORWARDED", l4=l4, summary=summary, event_type={"type": 4}, obs_point="TO_ENDPOINT"
    )
    l4r, summary_r = _tcp(port, sport, ("SYN", "ACK"))
    factory.tick(1)
    yield to_client(
        verdict="FORWARDED",
        l4=l4r,
        summary=summary_r,
        event_type={"type": 4, "sub_type": 5},
        obs_point="FROM_ENDPOINT",
    )
    if http is not None:
        method, path, code = http
        url = f"http://{server.app}.{server.namespace}.svc.cluster.local:{port}{path}"
        l7_req = {"type": "REQUEST", "http": {"method": method, "url": url, "protocol": "HTTP/1.1"}}
        factory.tick(3)
        verdict = "DROPPED" if code == 403 else "FORWARDED"
        yield to_server(
            verdict=verdict,
            l4=_tcp(sport, port, ())[0],
            summary=f"HTTP/1.1 {method} {url}",
            event_type={"type": 129},
            l7=l7_req,
            flow_type="L7",
            direction="INGRESS",
        )
        latency_ms = factory.rng.randint(1, 90)
        factory.tick(latency_ms)
        l7_resp = {
            "type": "RESPONSE",
            "latency_ns": str(latency_ms * 1_000_000),
            "http": {"code": code, "method": method, "url": url, "protocol": "HTTP/1.1"},
        }
        yield to_client(
            verdict=verdict,
            l4=_tcp(port, sport, ())[0],
            summary=f"HTTP/1.1 {code} {latency_ms}ms ({method} {url})",
            event_type={"type": 129},
            l7=l7_resp,
            flow_type="L7",
            direction="INGRESS",
        )
    l4f, summary_f = _tcp(sport, port, ("ACK", "FIN"))
    factory.tick(5)
    yield to_server(
        verdict="FORWARDED",
        l4=l4f,
        summary=summary_f,
        event_type={"type": 4, "sub_type": 5},
        obs_point="FROM_ENDPOINT",
    )


def dns_lookup(
    factory: FlowFactory, client: Pod, name: str, answer: str, node: str = "lab-worker"
) -> Iterator[dict]:
    """A DNS query to kube-dns and its answer, as the DNS proxy reports them."""
    sport = factory.rng.randint(32768, 60999)
    src, dst = client.endpoint(), KUBE_DNS.endpoint()
    udp = {"UDP": {"source_port": sport, "destination_port": 53}}
    factory.tick()
    yield factory.flow(
        src,
        dst,
        client.ip,
        KUBE_DNS.ip,
        node=node,
        verdict="FORWARDED",
        l4=udp,
        summary="UDP",
        event_type={"type": 4, "sub_type": 5},
        is_reply=False,
        obs_point="FROM_ENDPOINT",
        dst_service={"name": "kube-dns", "namespace": "kube-system"},
    )
    query = {"type": "REQUEST", "dns": {"query": name + ".", "observation_source": "proxy", "qtypes": ["A"]}}
    factory.tick(1)
    yield factory.flow(
        src,
        dst,
        client.ip,
        KUBE_DNS.ip,
        node=node,
        verdict="FORWARDED",
        l4=udp,
        summary=f"DNS Query {name}. A",
        event_type={"type": 129},
        is_reply=False,
        l7=query,
        flow_type="L7",
        direction="EGRESS",
    )
    reply_udp = {"UDP": {"source_port": 53, "destination_port": sport}}
    answer_l7 = {
        "type": "RESPONSE",
        "latency_ns": "412000",
        "dns": {
            "query": name + ".",
            "ips": [answer],
            "ttl": 30,
            "observation_source": "proxy",
            "qtypes": ["A"],
            "rrtypes": ["A"],
        },
    }
    factory.tick(2)
    yield factory.flow(
        dst,
        src,
        KUBE_DNS.ip,
        client.ip,
        node=node,
        verdict="FORWARDED",
        l4=reply_udp,
        summary=f'DNS Answer "{answer}" TTL: 30 (Proxy {name}. A)',
        event_type={"type": 129},
        is_reply=True,
        l7=answer_l7,
        flow_type="L7",
        direction="EGRESS",
    )


def payments_story(seed: int = 7) -> Iterator[dict]:
    """The seed article's scenario: default deny, the api-allow rules, L7 GET/POST, then audit mode."""
    factory = FlowFactory(seed)
    frontend, api, postgres = PAYMENTS
    probe = _probe_endpoint()
    for _ in range(3):
        yield from dns_lookup(factory, frontend, "api.payments.svc.cluster.local", api.ip)
        yield from tcp_conversation(factory, frontend, api, 8080, http=("GET", "/api/v1/orders", 200))
        yield from tcp_conversation(factory, api, postgres, 5432, direction="EGRESS")
        yield from tcp_conversation(factory, probe, api, 8080, denied=True)
    yield from tcp_conversation(
        factory, frontend, api, 8080, http=("POST", "/api/v1/orders", 403), policy="api-http-l7"
    )
    yield from tcp_conversation(
        factory, frontend, api, 8080, http=("GET", "/healthz", 200), policy="api-http-l7"
    )
    for _ in range(2):  # audit mode on the api pod: the probe's requests pass with verdict AUDIT
        yield from tcp_conversation(factory, probe, api, 8080, audit=True)


def mixed_flows(count: int, seed: int = 1) -> Iterator[dict]:
    """``count`` varied flows over several namespaces: traces, verdicts, drops, HTTP, DNS."""
    factory = FlowFactory(seed)
    pods = PAYMENTS + OTHER_PODS
    produced = 0
    rng = factory.rng
    while produced < count:
        pick = rng.random()
        server = rng.choice(pods)
        client = rng.choice([p for p in pods if p is not server])
        node = rng.choice(("lab-worker", "lab-worker2"))
        if pick < 0.15:
            batch = dns_lookup(
                factory, client, f"{server.app}.{server.namespace}.svc.cluster.local", server.ip, node
            )
        elif pick < 0.30:
            batch = tcp_conversation(
                factory, _probe_endpoint(), server, rng.choice((80, 8080, 5432)), node=node, denied=True
            )
        elif pick < 0.60:
            method = rng.choice(("GET", "GET", "GET", "POST", "PUT", "DELETE"))
            code = rng.choice((200, 200, 201, 204, 403, 404, 500, 503))
            batch = tcp_conversation(
                factory, client, server, 8080, node=node, http=(method, f"/v1/{server.app}/items", code)
            )
        else:
            batch = tcp_conversation(
                factory,
                client,
                server,
                rng.choice((443, 5432, 6379, 9092)),
                node=node,
                audit=rng.random() < 0.05,
            )
        for item in batch:
            yield item
            produced += 1
            if produced >= count:
                return


def write_jsonl(records: Iterator[dict], out) -> int:  # noqa: ANN001 - any binary stream
    """Write records as canonical JSON lines; returns how many were written."""
    from hubblepy.codec import encode_response

    count = 0
    chunk: list[bytes] = []
    for record in records:
        chunk.append(encode_response(record))
        count += 1
        if len(chunk) >= 1024:
            out.write(b"\n".join(chunk) + b"\n")
            chunk.clear()
    if chunk:
        out.write(b"\n".join(chunk) + b"\n")
    return count


def main(argv: list[str] | None = None) -> None:
    """``python -m hubblepy.sample.flowgen (--story payments | --mixed N) [--seed S]`` to stdout."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="flowgen", description=__doc__)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--story", choices=["payments"])
    group.add_argument("--mixed", type=int, metavar="N")
    parser.add_argument("--seed", type=int, default=None)
    options = parser.parse_args(argv)
    if options.story:
        records = payments_story() if options.seed is None else payments_story(options.seed)
    else:
        records = mixed_flows(options.mixed, 1 if options.seed is None else options.seed)
    write_jsonl(records, sys.stdout.buffer)


if __name__ == "__main__":
    main()
