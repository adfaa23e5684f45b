"""Every datapath event layout and version (Cilium's pkg/monitor), built by hand with real packet bytes."""

from __future__ import annotations

import pytest

from hubblepy.parser import EndpointInfo, Parser, PolicyMatch, StaticResolver
from hubblepy.parser import encode as enc

NOW = 1_700_000_000_123_000_000
CLIENT = "10.244.1.10"
SERVER = "10.244.2.20"
CLIENT6 = "fd00::10"
SERVER6 = "fd00::20"


@pytest.fixture()
def resolver() -> StaticResolver:
    r = StaticResolver()
    r.add_endpoint(
        EndpointInfo(
            id=100,
            identity=5001,
            namespace="payments",
            pod_name="frontend",
            labels=("k8s:app=frontend", "k8s:io.kubernetes.pod.namespace=payments"),
            ips=(CLIENT, CLIENT6),
        )
    )
    r.add_endpoint(
        EndpointInfo(
            id=200,
            identity=5002,
            namespace="payments",
            pod_name="api",
            labels=("k8s:app=api", "k8s:io.kubernetes.pod.namespace=payments"),
            ips=(SERVER, SERVER6),
        )
    )
    r.set_interface(9, "lxc-front")
    return r


@pytest.fixture()
def parser(resolver: StaticResolver) -> Parser:
    return Parser(resolver, "node-a")


def tcp4(flags: int = enc.TCP_SYN, src: str = CLIENT, dst: str = SERVER) -> bytes:
    return enc.ethernet(enc.ipv4(src, dst, 6, enc.tcp(40000, 8080, flags)))


def decode_one(parser: Parser, data: bytes) -> dict:
    flow = parser.decode(0, data, NOW)
    assert flow is not None, parser.error_counts
    return flow


# --- trace ----------------------------------------------------------------------------------------
def test_trace_v0_has_no_orig_ip(parser: Parser) -> None:
    flow = decode_one(parser, enc.trace_event(tcp4(), version=0, obs_point=5, source=100, src_label=5001))
    assert flow["IP"] == {"source": CLIENT, "destination": SERVER, "ipVersion": "IPv4"}
    assert flow["source"]["ID"] == 100
    assert flow["destination"]["ID"] == 200
    assert flow["traffic_direction"] == "EGRESS"
    assert flow["time"] == "2023-11-14T22:13:20.123Z"


def test_trace_v1_orig_ip_sets_source_xlated(parser: Parser) -> None:
    packet = tcp4(src="172.18.0.3", dst="1.1.1.1")
    flow = decode_one(parser, enc.trace_event(packet, version=1, obs_point=11, source=100, orig_ip=CLIENT))
    assert flow["IP"] == {
        "source": CLIENT,
        "source_xlated": "172.18.0.3",
        "destination": "1.1.1.1",
        "ipVersion": "IPv4",
    }
    assert flow["source"]["pod_name"] == "frontend"  # looked up by the original address
    assert flow["trace_observation_point"] == "TO_NETWORK"


def test_trace_v2_trace_id_and_ipv6_orig(parser: Parser) -> None:
    packet = enc.ethernet(enc.ipv6(CLIENT6, SERVER6, 17, enc.udp(5000, 53)), 0x86DD)
    flow = decode_one(parser, enc.trace_event(packet, flags=0x01, orig_ip=CLIENT6, trace_id=51234))
    assert flow["IP"] == {"source": CLIENT6, "destination": SERVER6, "ipVersion": "IPv6"}
    assert flow["ip_trace_id"] == {"trace_id": "51234", "ip_option_type": 136}
    assert flow["Summary"] == "UDP"


def test_trace_l3_device_ipv4_and_ipv6(parser: Parser) -> None:
    flow4 = decode_one(parser, enc.trace_event(enc.ipv4(CLIENT, SERVER, 1, enc.icmp4(8)), flags=0x02))
    assert "ethernet" not in flow4
    assert flow4["l4"] == {"ICMPv4": {"type": 8}}
    assert flow4["Summary"] == "ICMPv4 EchoRequest"
    flow6 = decode_one(parser, enc.trace_event(enc.ipv6(CLIENT6, SERVER6, 58, enc.icmp6(129)), flags=0x03))
    assert flow6["l4"] == {"ICMPv6": {"type": 129}}
    assert flow6["Summary"] == "ICMPv6 EchoReply"


def test_trace_to_endpoint_reply_to_proxy_and_encrypted(parser: Parser) -> None:
    reply = decode_one(
        parser,
        enc.trace_event(
            tcp4(enc.TCP_SYN | enc.TCP_ACK, SERVER, CLIENT), obs_point=0, source=100, reason=0x82
        ),
    )
    assert reply["trace_observation_point"] == "TO_ENDPOINT"
    assert reply["trace_reason"] == "REPLY"
    assert reply["is_reply"] is True
    assert reply["reply"] is True
    assert reply["IP"]["encrypted"] is True
    # Emitted at endpoint 100, which is not the packet's source, for a reply: the connection
    # endpoint 100 opened was egress, and Hubble reports the connection's direction.
    assert reply["traffic_direction"] == "EGRESS"
    request_in = decode_one(parser, enc.trace_event(tcp4(src=SERVER, dst=CLIENT), obs_point=0, source=100))
    assert request_in["traffic_direction"] == "INGRESS"
    keys = list(reply)
    assert keys.index("reply") < keys.index("event_type") < keys.index("is_reply") < keys.index("Summary")

    proxy = decode_one(parser, enc.trace_event(tcp4(), obs_point=1, source=100, dst_id=15001, reason=0))
    assert proxy["trace_observation_point"] == "TO_PROXY"
    assert proxy["proxy_port"] == 15001
    assert proxy["verdict"] == "FORWARDED"


def test_trace_unknown_reason_and_srv6(parser: Parser) -> None:
    unknown = decode_one(parser, enc.trace_event(tcp4(), source=100, reason=5))
    assert "is_reply" not in unknown
    assert "trace_reason" not in unknown
    assert "traffic_direction" not in unknown
    srv6 = decode_one(parser, enc.trace_event(tcp4(), source=100, reason=6))
    assert srv6["trace_reason"] == "SRV6_ENCAP"
    assert "is_reply" not in srv6
    assert srv6["traffic_direction"] == "EGRESS"


def test_trace_version_3_is_rejected(parser: Parser) -> None:
    assert parser.decode(0, enc.trace_event(tcp4(), version=3), NOW) is None
    assert parser.error_counts["unsupported_version"] == 1
    assert parser.parse_errors == 1


def test_trace_interface_name_from_resolver(parser: Parser) -> None:
    flow = decode_one(parser, enc.trace_event(tcp4(), ifindex=9))
    assert flow["interface"] == {"index": 9, "name": "lxc-front"}
    flow = decode_one(parser, enc.trace_event(tcp4(), ifindex=10))
    assert flow["interface"] == {"index": 10}


# --- drop -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", [0, 1, 2, 3])
def test_drop_all_versions(parser: Parser, version: int) -> None:
    data = enc.drop_event(tcp4(), version=version, reason=133, source=200, dst_label=5002, line=77, file=1)
    flow = decode_one(parser, data)
    assert flow["verdict"] == "DROPPED"
    assert flow["drop_reason"] == 133
    assert flow["drop_reason_desc"] == "POLICY_DENIED"
    assert flow["file"] == {"name": "bpf_host.c", "line": 77}
    assert flow["event_type"] == {"type": 1, "sub_type": 133}
    assert flow["traffic_direction"] == "INGRESS"  # source 200 is the destination endpoint
    assert flow["l4"]["TCP"]["destination_port"] == 8080


def test_drop_v2_l3_ipv6_flags_and_v3_trace_id(parser: Parser) -> None:
    packet = enc.ipv6(CLIENT6, SERVER6, 6, enc.tcp(1, 2, enc.TCP_RST | enc.TCP_ACK))
    v2 = decode_one(parser, enc.drop_event(packet, version=2, reason=181, flags=0x03))
    assert v2["IP"]["ipVersion"] == "IPv6"
    assert v2["drop_reason_desc"] == "POLICY_DENY"
    assert v2["Summary"] == "TCP Flags: ACK, RST"
    v3 = decode_one(parser, enc.drop_event(tcp4(), version=3, trace_id=7))
    assert v3["ip_trace_id"] == {"trace_id": "7", "ip_option_type": 136}


def test_drop_unknown_reason_file_and_version(parser: Parser) -> None:
    flow = decode_one(parser, enc.drop_event(tcp4(), reason=159, file=99))
    assert flow["drop_reason_desc"] == 159  # no proto name: stays a number
    assert flow["file"] == {"name": "unknown(99)"}
    assert parser.decode(0, enc.drop_event(tcp4(), version=4), NOW) is None
    assert parser.error_counts["unsupported_version"] == 1


def test_drop_needs_full_versioned_header(parser: Parser) -> None:
    data = enc.drop_event(b"", version=3)[:44]
    assert parser.decode(0, data, NOW) is None
    assert parser.error_counts["truncated_header"] == 1


# --- policy verdict ---------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", [32, 40])
@pytest.mark.parametrize("pad", [0, 3, 7])
def test_policy_verdict_layouts_are_told_apart_by_length(parser: Parser, layout: int, pad: int) -> None:
    flags = enc.policy_verdict_flags(1, match_type=2)
    data = enc.policy_verdict_event(
        tcp4(), layout=layout, source=200, remote_label=5001, dst_port=8080, flags=flags, pad=pad
    )
    flow = decode_one(parser, data)
    assert flow["verdict"] == "FORWARDED"
    assert flow["IP"] == {"source": CLIENT, "destination": SERVER, "ipVersion": "IPv4"}
    assert flow["l4"]["TCP"]["source_port"] == 40000
    assert flow["traffic_direction"] == "INGRESS"
    assert flow["policy_match_type"] == 2
    assert flow["is_reply"] is False
    assert flow["source"]["identity"] == 5001
    assert flow["destination"]["identity"] == 5002


def test_policy_verdict_layout_can_be_forced(resolver: StaticResolver) -> None:
    data = enc.policy_verdict_event(tcp4(), layout=32, flags=1)
    forced = Parser(resolver, policy_verdict_layout=40)
    # Read as the 40-byte layout, the first 8 packet bytes become cookie/pad: the packet is garbage.
    flow = forced.decode(0, data, NOW)
    assert flow is None or flow.get("IP", {}).get("source") != CLIENT
    assert Parser(resolver, policy_verdict_layout=32).decode(0, data, NOW)["IP"]["source"] == CLIENT


def test_policy_verdict_verdicts(parser: Parser) -> None:
    def verdict_of(verdict: int, audited: bool = False) -> dict:
        flags = enc.policy_verdict_flags(2, audited=audited, match_type=1)
        return decode_one(
            parser, enc.policy_verdict_event(tcp4(), verdict=verdict, flags=flags, remote_label=5002)
        )

    redirected = verdict_of(15001)
    assert redirected["verdict"] == "REDIRECTED"
    assert "proxy_port" not in redirected
    audit = verdict_of(0, audited=True)
    assert audit["verdict"] == "AUDIT"
    assert audit["is_reply"] is False
    denied = verdict_of(-181)
    assert (denied["verdict"], denied["drop_reason"], denied["drop_reason_desc"]) == (
        "DROPPED",
        181,
        "POLICY_DENY",
    )
    assert denied["traffic_direction"] == "EGRESS"
    assert denied["destination"]["identity"] == 5002
    assert "is_reply" not in denied


def test_policy_verdict_auth_type_and_l3_ipv6(parser: Parser) -> None:
    packet = enc.ipv6(CLIENT6, SERVER6, 6, enc.tcp(1, 443, enc.TCP_SYN))
    flags = enc.policy_verdict_flags(2, ipv6=True, l3=True, match_type=3)
    flow = decode_one(parser, enc.policy_verdict_event(packet, flags=flags, auth_type=1))
    assert flow["auth_type"] == "SPIRE"
    assert list(flow).index("auth_type") == list(flow).index("verdict") + 1
    assert flow["IP"]["ipVersion"] == "IPv6"
    assert flow["policy_match_type"] == 3


def test_policy_verdict_cookie_fills_policy_fields(resolver: StaticResolver) -> None:
    policy = {"name": "api-allow", "namespace": "payments", "revision": "3", "kind": "CiliumNetworkPolicy"}
    resolver.set_policy(42, PolicyMatch(policies=(policy,), log=("allow-api",)))
    parser = Parser(resolver)
    allowed = decode_one(
        parser, enc.policy_verdict_event(tcp4(), cookie=42, flags=enc.policy_verdict_flags(1), source=200)
    )
    assert allowed["ingress_allowed_by"] == [policy]
    assert allowed["policy_log"] == ["allow-api"]
    assert list(allowed)[-2:] == ["ingress_allowed_by", "policy_log"]
    denied = decode_one(
        parser, enc.policy_verdict_event(tcp4(), cookie=42, verdict=-133, flags=enc.policy_verdict_flags(2))
    )
    assert denied["egress_denied_by"] == [policy]
    audited = decode_one(
        parser, enc.policy_verdict_event(tcp4(), cookie=42, flags=enc.policy_verdict_flags(1, audited=True))
    )
    assert audited["verdict"] == "AUDIT"
    assert audited["ingress_denied_by"] == [policy]  # allowed only by audit mode
    other_drop = decode_one(parser, enc.policy_verdict_event(tcp4(), cookie=42, verdict=-189, flags=2))
    assert "egress_denied_by" not in other_drop and other_drop["policy_log"] == ["allow-api"]
    old_layout = decode_one(parser, enc.policy_verdict_event(tcp4(), layout=32, flags=1))
    assert "ingress_allowed_by" not in old_layout  # no cookie in the old layout


# --- debug capture, trace-sock, debug message --------------------------------------------------------
def test_capture_delivery_and_proxy_points(parser: Parser) -> None:
    delivery = decode_one(parser, enc.capture_event(tcp4(enc.TCP_PSH | enc.TCP_ACK), point=4, arg1=9))
    assert "verdict" not in delivery
    assert delivery["debug_capture_point"] == "DBG_CAPTURE_DELIVERY"
    assert delivery["interface"] == {"index": 9, "name": "lxc-front"}
    assert delivery["event_type"] == {"type": 3, "sub_type": 4}
    assert delivery["Summary"] == "TCP Flags: ACK, PSH"
    assert delivery["source"]["ID"] == 100
    proxy = decode_one(parser, enc.capture_event(tcp4(), point=8, arg1=0x2A3B0000))
    assert proxy["debug_capture_point"] == "DBG_CAPTURE_PROXY_PRE"
    assert proxy["proxy_port"] == 0x00003B2A
    assert "interface" not in proxy


def test_trace_sock_forward_and_reverse(resolver: StaticResolver) -> None:
    resolver.set_cgroup(34073, [CLIENT, CLIENT6])
    parser = Parser(resolver, "node-a")
    fwd = decode_one(
        parser,
        enc.trace_sock_event(point=1, dst_ip="10.96.0.1", dst_port=443, cookie=7669853, cgroup_id=34073),
    )
    assert fwd["verdict"] == "TRACED"
    assert fwd["Type"] == "SOCK"
    assert fwd["IP"] == {"source": CLIENT, "destination": "10.96.0.1", "ipVersion": "IPv4"}
    assert fwd["l4"] == {"TCP": {"destination_port": 443}}
    assert fwd["source"]["pod_name"] == "frontend"
    assert fwd["destination"] == {}
    assert fwd["event_type"] == {"type": 7, "sub_type": 1}
    assert fwd["sock_xlate_point"] == "SOCK_XLATE_POINT_PRE_DIRECTION_FWD"
    assert (fwd["socket_cookie"], fwd["cgroup_id"], fwd["Summary"]) == ("7669853", "34073", "TCP")
    rev = decode_one(
        parser, enc.trace_sock_event(point=4, l4_proto=2, dst_ip="fd00::99", dst_port=53, cgroup_id=34073)
    )
    assert rev["verdict"] == "TRANSLATED"
    assert rev["IP"] == {"source": "fd00::99", "destination": CLIENT6, "ipVersion": "IPv6"}
    assert rev["l4"] == {"UDP": {"source_port": 53}}
    assert rev["destination"]["pod_name"] == "frontend"
    assert rev["Summary"] == "UDP"
    # Cilium's default skips events of cgroups without a known pod IP; they are counted.
    assert parser.decode(0, enc.trace_sock_event(cgroup_id=999), NOW) is None
    assert (parser.skipped, parser.parse_errors) == (1, 0)
    keep = Parser(resolver, skip_unknown_cgroup_ids=False)
    unknown = decode_one(keep, enc.trace_sock_event(point=0, l4_proto=0, cgroup_id=999))
    assert "verdict" not in unknown and "l4" not in unknown
    assert unknown["IP"] == {"destination": "10.96.0.1", "ipVersion": "IPv4"}
    assert unknown["Summary"] == "Unknown"


def test_debug_message_goes_to_sink(resolver: StaticResolver) -> None:
    events: list[dict] = []
    parser = Parser(resolver, debug_sink=events.append)
    out = parser.decode_batch([(1, enc.debug_event(6, source=100, hash_=5, arg1=1, arg2=0, arg3=3))], NOW)
    assert out == []
    assert len(events) == 1
    event = events[0]
    assert list(event) == ["type", "source", "hash", "arg1", "arg2", "arg3", "message", "cpu"]
    assert event["type"] == "DBG_CT_LOOKUP"
    assert event["source"]["ID"] == 100 and event["source"]["pod_name"] == "frontend"
    assert (event["hash"], event["arg1"], event["arg2"], event["arg3"], event["cpu"]) == (5, 1, 0, 3, 1)
    assert parser.debug_events_decoded == 1
    direct = parser.decode_debug(0, enc.debug_event(1, source=7))
    assert direct is not None and direct["source"] == {"ID": 7} and direct["type"] == "DBG_GENERIC"
    assert len(events) == 1  # decode_debug returns instead of using the sink
    anonymous = parser.decode_debug(0, enc.debug_event(5, arg1=1, arg2=2))
    assert "source" not in anonymous
    assert anonymous["message"] == "Policy evaluation would deny packet from 1 to 2"


# --- framing ------------------------------------------------------------------------------------------
def test_perf_padding_after_packet_is_ignored(parser: Parser) -> None:
    # A UDP packet whose IP length covers exactly its bytes, then 7 perf pad bytes.
    flow = decode_one(
        parser, enc.trace_event(enc.ethernet(enc.ipv4(CLIENT, SERVER, 17, enc.udp(1, 2))), pad=7)
    )
    assert flow["l4"] == {"UDP": {"source_port": 1, "destination_port": 2}}


def test_unknown_ext_version_is_counted_and_registered_extension_skipped(resolver: StaticResolver) -> None:
    data = enc.trace_event(tcp4(), ext_version=1)
    parser = Parser(resolver)
    assert parser.decode(0, data, NOW) is None
    assert parser.error_counts["unknown_ext_version"] == 1
    ext = bytearray(data)
    ext[56:56] = b"\xee" * 8  # an 8-byte extension before the packet
    parser = Parser(resolver, extension_lengths={0: 0, 1: 8})
    assert decode_one(parser, bytes(ext))["IP"]["source"] == CLIENT


def test_invalid_types_and_empty_samples_are_counted(parser: Parser) -> None:
    samples = [
        (0, b""),
        (0, b"\x00" * 40),
        (0, b"\x06" + b"\x00" * 40),
        (0, b"\x09"),
        (0, enc.trace_event(tcp4())),
    ]
    flows = parser.decode_batch(samples, NOW)
    assert len(flows) == 1
    assert parser.parse_errors == 4
    assert parser.error_counts == {"empty_sample": 1, "invalid_type": 3}
    assert parser.flows_decoded == 1


def test_bytearray_and_memoryview_samples(parser: Parser) -> None:
    data = enc.trace_event(tcp4())
    flows = parser.decode_batch([(0, bytearray(data)), (1, memoryview(data))], NOW)
    assert [f["IP"]["source"] for f in flows] == [CLIENT, CLIENT]
    assert parser.parse_errors == 0
