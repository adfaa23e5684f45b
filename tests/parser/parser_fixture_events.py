"""Rebuild datapath event samples from the upstream fixture flows (tests/fixtures/flows.jsonl).

For each L3/L4 fixture flow (drop, trace, policy verdict, capture) this builds the sample bytes a
datapath would have sent for it and a StaticResolver that knows its endpoints, so the parser's
output can be compared with the upstream canonical JSON.
"""

from __future__ import annotations

from hubblepy.parser import EndpointInfo, PolicyMatch, StaticResolver
from hubblepy.parser import encode as enc
from hubblepy.parser.constants import BPF_FILE_NAMES, TRACE_POINT_NAMES, TRACE_REASON_NAMES

POINT_NUMBERS = {name: num for num, name in TRACE_POINT_NAMES.items()}
FILE_IDS = {name: num for num, name in BPF_FILE_NAMES.items()}
# flow.TraceReason number -> datapath reason (inverse of the parser's mapping)
DP_REASON = {1: 0, 2: 1, 3: 2, 4: 3, 5: 4, 0: 5, 6: 6, 7: 7, 8: 8}
REASON_NUMBERS = {name: num for num, name in TRACE_REASON_NAMES.items()}
TCP_BITS = {"FIN": 1, "SYN": 2, "RST": 4, "PSH": 8, "ACK": 16, "URG": 32, "ECE": 64, "CWR": 128}
AUTH = {"SPIRE": 1, "TEST_ALWAYS_FAIL": 2}


def packet_for(flow: dict) -> tuple[bytes, bool]:
    """L3 packet bytes (no Ethernet) for the flow's IP/l4; returns (bytes, is_ipv6)."""
    ip = flow.get("IP")
    if ip is None:
        return b"", False
    l4 = flow.get("l4", {})
    v6 = ip["ipVersion"] == "IPv6"
    if "TCP" in l4:
        t = l4["TCP"]
        bits = sum(TCP_BITS[k] for k in t.get("flags", {}) if k in TCP_BITS)
        proto, payload = (
            6,
            enc.tcp(
                t.get("source_port", 0), t.get("destination_port", 0), bits, ns="NS" in t.get("flags", {})
            ),
        )
    elif "UDP" in l4:
        u = l4["UDP"]
        proto, payload = 17, enc.udp(u.get("source_port", 0), u.get("destination_port", 0))
    elif "ICMPv4" in l4:
        proto, payload = 1, enc.icmp4(l4["ICMPv4"].get("type", 0), l4["ICMPv4"].get("code", 0))
    elif "ICMPv6" in l4:
        proto, payload = 58, enc.icmp6(l4["ICMPv6"].get("type", 0), l4["ICMPv6"].get("code", 0))
    else:
        proto, payload = 47, b""
    src = ip.get("source_xlated") or ip["source"]
    if v6:
        return enc.ipv6(src, ip["destination"], proto, payload), True
    return enc.ipv4(src, ip["destination"], proto, payload), False


def resolver_for(flow: dict, r: StaticResolver | None = None) -> StaticResolver:
    """A resolver that knows ``flow``'s endpoints (added to ``r`` when given)."""
    r = r if r is not None else StaticResolver()
    ip = flow.get("IP", {})
    for side, addr in (("source", ip.get("source")), ("destination", ip.get("destination"))):
        ep = flow.get(side, {})
        info = EndpointInfo(
            id=ep.get("ID", 0),
            identity=ep.get("identity", 0),
            namespace=ep.get("namespace", ""),
            pod_name=ep.get("pod_name", ""),
            labels=tuple(ep.get("labels", ())),
            workloads=tuple((w.get("name", ""), w.get("kind", "")) for w in ep.get("workloads", ())),
            cluster_name=ep.get("cluster_name", ""),
            ips=(addr,) if addr else (),
        )
        if info.id:
            r.add_endpoint(info)
        elif addr:
            r.set_ipcache(addr, info.identity, info.namespace, info.pod_name)
        if info.identity:
            r.set_identity(info.identity, info.labels)
    src_id = flow.get("source", {}).get("ID", 0)
    dst_id = flow.get("destination", {}).get("ID", 0)
    if flow.get("source_names"):
        r.set_dns_names(dst_id, ip["source"], flow["source_names"])
    if flow.get("destination_names"):
        r.set_dns_names(src_id, ip["destination"], flow["destination_names"])
    l4 = next(iter(flow.get("l4", {}).values()), {})
    for side, addr, port in (
        ("source_service", ip.get("source"), l4.get("source_port", 0)),
        ("destination_service", ip.get("destination"), l4.get("destination_port", 0)),
    ):
        service = flow.get(side)
        if service and addr:
            r.set_service(addr, port, service["name"], service.get("namespace", ""))
    iface = flow.get("interface")
    if iface and iface.get("name"):
        r.set_interface(iface["index"], iface["name"])
    policies = tuple(
        flow.get(k, ())
        for k in ("egress_allowed_by", "ingress_allowed_by", "egress_denied_by", "ingress_denied_by")
    )
    flat = tuple(p for group in policies for p in group)
    if flat or flow.get("policy_log"):
        r.set_policy(1, PolicyMatch(policies=flat, log=tuple(flow.get("policy_log", ()))))
    return r


def event_for(flow: dict, source: int) -> bytes:
    """Sample bytes for a drop/trace/policy-verdict/capture fixture flow; ``source`` = emitting endpoint."""
    packet, v6 = packet_for(flow)
    et = flow["event_type"]
    kind, sub = et["type"], et.get("sub_type", 0)
    eth = flow.get("ethernet")
    if eth is not None or kind == 3:  # capture events always carry Ethernet frames
        mac = bytes.fromhex((eth or {}).get("source", "02:00:00:00:00:01").replace(":", ""))
        dst_mac = bytes.fromhex((eth or {}).get("destination", "02:00:00:00:00:02").replace(":", ""))
        ethertype = 0x86DD if v6 else 0x0800 if packet else 0x88CC  # LLDP when there is no IP
        packet = enc.ethernet(packet, ethertype, src=mac, dst=dst_mac)
        l3_flags = 0x01 if v6 else 0
    else:
        l3_flags = 0x02 | (0x01 if v6 else 0)
    src_id = flow.get("source", {}).get("identity", 0)
    dst_id = flow.get("destination", {}).get("identity", 0)
    trace_id = int(flow.get("ip_trace_id", {}).get("trace_id", "0"))
    if kind == 4:
        reason = DP_REASON[REASON_NUMBERS.get(flow.get("trace_reason", "TRACE_REASON_UNKNOWN"), 0)]
        if flow.get("IP", {}).get("encrypted"):
            reason |= 0x80
        return enc.trace_event(
            packet,
            obs_point=sub,
            source=source,
            src_label=src_id,
            dst_label=dst_id,
            dst_id=flow.get("proxy_port", 0),
            reason=reason,
            flags=l3_flags,
            ifindex=flow.get("interface", {}).get("index", 0),
            orig_ip=flow["IP"]["source"] if flow.get("IP", {}).get("source_xlated") else None,
            trace_id=trace_id,
        )
    if kind == 1:
        file_info = flow.get("file", {})
        return enc.drop_event(
            packet,
            reason=sub,
            source=source,
            src_label=src_id,
            dst_label=dst_id,
            line=file_info.get("line", 0),
            file=FILE_IDS.get(file_info.get("name", ""), 0),
            flags=l3_flags,
            trace_id=trace_id,
        )
    if kind == 5:
        ingress = flow.get("traffic_direction") == "INGRESS"
        verdict = {"DROPPED": -flow.get("drop_reason", 0), "REDIRECTED": 1}.get(flow["verdict"], 0)
        flags = enc.policy_verdict_flags(
            1 if ingress else 2,
            ipv6=v6,
            l3=True,
            match_type=flow.get("policy_match_type", 0),
            audited=flow["verdict"] == "AUDIT",
        )
        l4 = flow.get("l4", {})
        dport = next(iter(l4.values()), {}).get("destination_port", 0) if l4 else 0
        return enc.policy_verdict_event(
            packet,
            source=source,
            remote_label=src_id if ingress else dst_id,
            verdict=verdict,
            dst_port=dport,
            flags=flags,
            auth_type=AUTH.get(flow.get("auth_type", ""), 0),
            cookie=1,
        )
    if kind == 3:
        return enc.capture_event(
            packet, point=sub, source=source, arg1=flow.get("interface", {}).get("index", 0)
        )
    raise ValueError(f"no event layout for type {kind}")
