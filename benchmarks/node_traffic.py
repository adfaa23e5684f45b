"""Synthetic datapath traffic for a node's ring: Cilium-layout trace, drop and policy-verdict samples.

What a busy node's perf buffer carries: pods of one namespace talking over long-lived TCP
connections (SYN, SYN-ACK, ACK, data both ways with TCP timestamps, FIN), each packet traced where
it leaves one endpoint and where it enters the other, allowed ingress policy verdicts for the first
packet of each connection, and policy drops of a denied client retrying its SYNs. Within one shape
(endpoints, ports, flags) only what varies between real packets varies: sequence and
acknowledgement numbers, IP IDs, TCP timestamps, payload lengths, skb hashes. Used by
bench_relay (``unfiltered`` rows) to fill a node's ring with raw samples.
"""

from __future__ import annotations

import random
import struct

import numpy as np

from hubblepy.monitor.reader import RECORD_PAD, RecordBatch
from hubblepy.parser import EndpointInfo, PolicyMatch, StaticResolver
from hubblepy.parser import encode as enc

POLICY_COOKIE = 7
PODS = (  # name, endpoint id, identity, IP, ifindex
    ("frontend", 11, 1001, "10.200.0.1", 101),
    ("api", 12, 1002, "10.200.0.2", 102),
    ("postgres", 13, 1003, "10.200.0.3", 103),
    ("intruder", 14, 1004, "10.200.0.4", 104),
)
CALLS = (("frontend", "api", 8080), ("api", "postgres", 5432))
SYN, ACK, PSH, FIN = enc.TCP_SYN, enc.TCP_ACK, enc.TCP_PSH, enc.TCP_FIN
TRACE_FROM_LXC, TRACE_TO_LXC = 5, 0


def resolver() -> StaticResolver:
    """The pods above (namespace payments), their interfaces and the policy that allows the calls."""
    r = StaticResolver()
    for name, ep_id, identity, ip, ifindex in PODS:
        r.add_endpoint(
            EndpointInfo(
                id=ep_id,
                identity=identity,
                namespace="payments",
                pod_name=f"{name}-7d4b9c6f5-x2k8p",
                labels=(f"k8s:app={name}", "k8s:io.kubernetes.pod.namespace=payments"),
                workloads=((name, "Deployment"),),
                ips=(ip,),
            )
        )
        r.set_interface(ifindex, f"lxc{name}")
    policy = {
        "name": "api-allow",
        "namespace": "payments",
        "labels": ["k8s:policy=api-allow"],
        "revision": "1",
    }
    r.set_policy(POLICY_COOKIE, PolicyMatch(policies=(policy,)))
    return r


_POD = {name: (ep_id, identity, ip, ifindex) for name, ep_id, identity, ip, ifindex in PODS}


def _tcp(sport: int, dport: int, flags: int, seq: int, ack: int, stamp: int, payload: int) -> bytes:
    """TCP header with Linux's options (SYN: MSS, SACK-permitted, timestamps, window scale; else
    NOP NOP timestamps) and ``payload`` bytes of data."""
    if flags & SYN:
        opts = struct.pack("!BBHBBBBII BBBB".replace(" ", ""), 2, 4, 1460, 4, 2, 8, 10, stamp, 0, 1, 3, 3, 7)
    else:
        opts = struct.pack("!BBBBII", 1, 1, 8, 10, stamp, stamp - 7)
    doff = (20 + len(opts)) // 4
    head = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, doff << 4, flags, 502, 0, 0)
    return head + opts + bytes(payload)


def _packet(src: str, dst: str, tcp: bytes, ip_id: int) -> bytes:
    s, d = _POD[src], _POD[dst]
    mac_src = bytes.fromhex(f"0a580a{s[0]:06x}")
    mac_dst = bytes.fromhex(f"0a580a{d[0]:06x}")
    ip = enc.ipv4(s[2], d[2], 6, tcp)
    ip = ip[:4] + struct.pack("!H", ip_id) + ip[6:]
    return enc.ethernet(ip, src=mac_src, dst=mac_dst)


def _traces(packet: bytes, src: str, dst: str, skb_hash: int, reply: bool) -> list[bytes]:
    """The packet leaving ``src`` and entering ``dst`` (128 bytes captured, as Cilium's default)."""
    s, d = _POD[src], _POD[dst]
    cap = packet[:128]
    out = []
    for point, source, ifindex, dst_id in ((TRACE_FROM_LXC, s[0], s[3], 0), (TRACE_TO_LXC, d[0], d[3], d[0])):
        sample = enc.trace_event(
            cap, version=1, obs_point=point, source=source, src_label=s[1], dst_label=d[1],
            dst_id=dst_id, reason=1 if reply else 0, ifindex=ifindex,
        )  # fmt: skip
        out.append(_with_lengths(sample, skb_hash, len(packet), len(cap)))
    return out


def _with_lengths(sample: bytes, skb_hash: int, len_orig: int, len_cap: int) -> bytes:
    return sample[:4] + struct.pack("=IIH", skb_hash, len_orig, len_cap) + sample[14:]


def connection_events(
    rng: random.Random, client: str, server: str, dport: int, sport: int, rounds: int
) -> list[bytes]:
    """Samples of one connection: handshake, about ``rounds`` request/response exchanges, close."""
    skb_hash = rng.getrandbits(32)
    cseq, sseq, stamp = rng.getrandbits(32), rng.getrandbits(32), rng.getrandbits(31)
    ip_id = rng.getrandbits(16)
    out: list[bytes] = []

    def send(frm: str, to: str, flags: int, payload: int, reply: bool) -> bytes:
        nonlocal ip_id, stamp
        ip_id = (ip_id + 1) & 0xFFFF
        stamp += rng.randint(1, 40)
        a, b = (sport, dport) if not reply else (dport, sport)
        seq, ack = (cseq, sseq) if not reply else (sseq, cseq)
        packet = _packet(
            frm, to, _tcp(a, b, flags, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, stamp, payload), ip_id
        )
        out.extend(_traces(packet, frm, to, skb_hash, reply))
        return packet

    syn = send(client, server, SYN, 0, False)
    s = _POD[server]
    verdict = enc.policy_verdict_event(
        syn[:128], source=s[0], remote_label=_POD[client][1], dst_port=dport, proto=6,
        flags=enc.policy_verdict_flags(1, match_type=2), cookie=POLICY_COOKIE,
    )  # fmt: skip
    out.append(_with_lengths(verdict, skb_hash, len(syn), min(len(syn), 128)))
    send(server, client, SYN | ACK, 0, True)
    send(client, server, ACK, 0, False)
    for _ in range(rng.randint(max(1, rounds // 2), rounds * 3 // 2 + 1)):
        size = rng.randint(80, 600)
        send(client, server, PSH | ACK, size, False)
        cseq += size
        send(server, client, ACK, 0, True)
        size = rng.randint(200, 1400)
        send(server, client, PSH | ACK, size, True)
        sseq += size
        send(client, server, ACK, 0, False)
    send(client, server, FIN | ACK, 0, False)
    send(server, client, FIN | ACK, 0, True)
    send(client, server, ACK, 0, False)
    return out


def denied_events(rng: random.Random, sport: int) -> list[bytes]:
    """An intruder's SYN to the api retried three times, each dropped by policy (reason 133)."""
    out = []
    skb_hash, stamp, ip_id = rng.getrandbits(32), rng.getrandbits(31), rng.getrandbits(16)
    for retry in range(3):
        packet = _packet(
            "intruder", "api", _tcp(sport, 8080, SYN, 77, 0, stamp + retry * 1000, 0), ip_id + retry
        )
        drop = enc.drop_event(
            packet[:128], version=2, reason=133, source=_POD["api"][0], src_label=_POD["intruder"][1],
            dst_label=_POD["api"][1], line=1996, file=108, ifindex=_POD["api"][3],
        )  # fmt: skip
        out.append(_with_lengths(drop, skb_hash, len(packet), min(len(packet), 128)))
    return out


def traffic(count: int, connections: int = 64, rounds: int = 4, seed: int = 1) -> list[bytes]:
    """``count`` samples from ``connections`` concurrent connections of about ``rounds`` request and
    response exchanges each (a new one replaces each that closes, on a new source port) and a
    denied client now and then, interleaved."""
    rng = random.Random(seed)
    port = 32768
    streams: list[list[bytes]] = []

    def new_stream() -> list[bytes]:
        nonlocal port
        port += 1
        if rng.random() < 0.1:
            return denied_events(rng, port)
        client, server, dport = CALLS[rng.randrange(len(CALLS))]
        return connection_events(rng, client, server, dport, port, rounds)

    streams = [new_stream() for _ in range(connections)]
    out: list[bytes] = []
    while len(out) < count:
        i = rng.randrange(connections)
        out.append(streams[i].pop(0))
        if not streams[i]:
            streams[i] = new_stream()
    return out


def record_batch(samples: list[bytes]) -> RecordBatch:
    """Samples laid out as the monitor reader leaves them (8-byte aligned, zero padded)."""
    data = bytearray()
    offsets, lengths = [], []
    for raw in samples:
        offsets.append(len(data))
        lengths.append(len(raw))
        data += raw + bytes(-len(raw) % 8)
    data += bytes(RECORD_PAD)
    n = len(samples)
    return RecordBatch(
        bytes(data),
        np.asarray(offsets, dtype=np.int64),
        np.asarray(lengths, dtype=np.uint32),
        np.zeros(n, dtype=np.uint16),
        [],
    )
