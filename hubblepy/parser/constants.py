"""Numeric constants of Cilium datapath events and the flow.proto enum names they map to.

Everything here is a plain table of public upstream values: the monitor message types, event
layouts, trace/drop reasons and reserved identities of Cilium (``pkg/monitor/api``,
``pkg/identity``, ``bpf/lib``) and the enums of Hubble's ``flow.proto`` (Cilium's
``api/v1/flow``). Enum tables map numbers to the proto value names used in
canonical flow dicts; numbers missing from a table are rendered as bare ints (the protojson rule for
unknown enum numbers).
"""

from __future__ import annotations

# --- message type byte (byte 0 of every perf sample) ------------------------------------------
MSG_DROP = 1
MSG_DEBUG = 2
MSG_CAPTURE = 3
MSG_TRACE = 4
MSG_POLICY_VERDICT = 5
MSG_RECORDER = 6
MSG_TRACE_SOCK = 7
MSG_ACCESS_LOG = 129  # agent-only: an L7 proxy's access-log record (Cilium's MessageTypeAccessLog)

# --- classifier flags (trace byte 27, drop v2+ byte 36) ----------------------------------------
CLS_FLAG_IPV6 = 0x01
CLS_FLAG_L3_DEV = 0x02
CLS_FLAG_VXLAN = 0x04
CLS_FLAG_GENEVE = 0x08

# --- policy verdict flags byte (offset 27) -------------------------------------------------------
PV_DIR_MASK = 0x03
PV_DIR_INGRESS = 1
PV_DIR_EGRESS = 2
PV_IPV6 = 0x04
PV_MATCH_MASK = 0x38
PV_MATCH_SHIFT = 3
PV_AUDITED = 0x40
PV_L3_DEV = 0x80

# --- trace reason byte -------------------------------------------------------------------------
TRACE_REASON_MASK = 0x7F
TRACE_REASON_ENCRYPTED = 0x80
TRACE_REASON_CT_REPLY = 2
TRACE_REASON_UNKNOWN = 5
TRACE_REASON_SRV6_ENCAP = 6
TRACE_REASON_SRV6_DECAP = 7

TRACE_TO_LXC = 0
TRACE_TO_PROXY = 1

# --- drop reasons that are policy denials (section 3.3): the only drops that name policies -------
DROP_POLICY_DENIED = 133
DROP_POLICY_DENY = 181
POLICY_DENY_REASONS = frozenset({DROP_POLICY_DENIED, DROP_POLICY_DENY})

# --- trace-sock (section 2.8) --------------------------------------------------------------------
TRACE_SOCK_FLAG_IPV6 = 0x01
SOCK_L4_NAMES: dict[int, str] = {1: "TCP", 2: "UDP"}  # trace-sock l4_proto byte -> l4 layer name
SOCK_XLATE_PRE_FWD = 1
SOCK_XLATE_POST_FWD = 2
SOCK_XLATE_PRE_REV = 3
SOCK_XLATE_POST_REV = 4

# --- IP option type Cilium's ip_trace_id travels in (agent default) -----------------------------
DEFAULT_IP_TRACE_OPTION_TYPE = 136

# --- flow.proto enums (number -> name) ----------------------------------------------------------
VERDICT_NAMES: dict[int, str] = {
    0: "VERDICT_UNKNOWN",
    1: "FORWARDED",
    2: "DROPPED",
    3: "ERROR",
    4: "AUDIT",
    5: "REDIRECTED",
    6: "TRACED",
    7: "TRANSLATED",
}

AUTH_TYPE_NAMES: dict[int, str] = {0: "DISABLED", 1: "SPIRE", 2: "TEST_ALWAYS_FAIL"}

TRAFFIC_DIRECTION_NAMES: dict[int, str] = {0: "TRAFFIC_DIRECTION_UNKNOWN", 1: "INGRESS", 2: "EGRESS"}

# flow.TraceObservationPoint by proto number; datapath point 0 (to-endpoint) maps to 101.
TRACE_POINT_NAMES: dict[int, str] = {
    0: "UNKNOWN_POINT",
    1: "TO_PROXY",
    2: "TO_HOST",
    3: "TO_STACK",
    4: "TO_OVERLAY",
    101: "TO_ENDPOINT",
    5: "FROM_ENDPOINT",
    6: "FROM_PROXY",
    7: "FROM_HOST",
    8: "FROM_STACK",
    9: "FROM_OVERLAY",
    10: "FROM_NETWORK",
    11: "TO_NETWORK",
    12: "FROM_CRYPTO",
    13: "TO_CRYPTO",
}

TRACE_REASON_NAMES: dict[int, str] = {
    0: "TRACE_REASON_UNKNOWN",
    1: "NEW",
    2: "ESTABLISHED",
    3: "REPLY",
    4: "RELATED",
    5: "REOPENED",
    6: "SRV6_ENCAP",
    7: "SRV6_DECAP",
    8: "ENCRYPT_OVERLAY",
}


def trace_reason_to_proto(dp_reason: int) -> int:
    """Map a masked datapath trace reason to the flow.TraceReason number (as Hubble's L3/L4 parser does)."""
    if dp_reason < TRACE_REASON_UNKNOWN:
        return dp_reason + 1
    if dp_reason == TRACE_REASON_UNKNOWN:
        return 0
    return dp_reason


DROP_REASON_NAMES: dict[int, str] = {
    0: "DROP_REASON_UNKNOWN",
    130: "INVALID_SOURCE_MAC",
    131: "INVALID_DESTINATION_MAC",
    132: "INVALID_SOURCE_IP",
    133: "POLICY_DENIED",
    134: "INVALID_PACKET_DROPPED",
    135: "CT_TRUNCATED_OR_INVALID_HEADER",
    136: "CT_MISSING_TCP_ACK_FLAG",
    137: "CT_UNKNOWN_L4_PROTOCOL",
    138: "CT_CANNOT_CREATE_ENTRY_FROM_PACKET",
    139: "UNSUPPORTED_L3_PROTOCOL",
    140: "MISSED_TAIL_CALL",
    141: "ERROR_WRITING_TO_PACKET",
    142: "UNKNOWN_L4_PROTOCOL",
    143: "UNKNOWN_ICMPV4_CODE",
    144: "UNKNOWN_ICMPV4_TYPE",
    145: "UNKNOWN_ICMPV6_CODE",
    146: "UNKNOWN_ICMPV6_TYPE",
    147: "ERROR_RETRIEVING_TUNNEL_KEY",
    148: "ERROR_RETRIEVING_TUNNEL_OPTIONS",
    149: "INVALID_GENEVE_OPTION",
    150: "UNKNOWN_L3_TARGET_ADDRESS",
    151: "STALE_OR_UNROUTABLE_IP",
    152: "NO_MATCHING_LOCAL_CONTAINER_FOUND",
    153: "ERROR_WHILE_CORRECTING_L3_CHECKSUM",
    154: "ERROR_WHILE_CORRECTING_L4_CHECKSUM",
    155: "CT_MAP_INSERTION_FAILED",
    156: "INVALID_IPV6_EXTENSION_HEADER",
    157: "IP_FRAGMENTATION_NOT_SUPPORTED",
    158: "SERVICE_BACKEND_NOT_FOUND",
    160: "NO_TUNNEL_OR_ENCAPSULATION_ENDPOINT",
    161: "FAILED_TO_INSERT_INTO_PROXYMAP",
    162: "REACHED_EDT_RATE_LIMITING_DROP_HORIZON",
    163: "UNKNOWN_CONNECTION_TRACKING_STATE",
    164: "LOCAL_HOST_IS_UNREACHABLE",
    165: "NO_CONFIGURATION_AVAILABLE_TO_PERFORM_POLICY_DECISION",
    166: "UNSUPPORTED_L2_PROTOCOL",
    167: "NO_MAPPING_FOR_NAT_MASQUERADE",
    168: "UNSUPPORTED_PROTOCOL_FOR_NAT_MASQUERADE",
    169: "FIB_LOOKUP_FAILED",
    170: "ENCAPSULATION_TRAFFIC_IS_PROHIBITED",
    171: "INVALID_IDENTITY",
    172: "UNKNOWN_SENDER",
    173: "NAT_NOT_NEEDED",
    174: "IS_A_CLUSTERIP",
    175: "FIRST_LOGICAL_DATAGRAM_FRAGMENT_NOT_FOUND",
    176: "FORBIDDEN_ICMPV6_MESSAGE",
    177: "DENIED_BY_LB_SRC_RANGE_CHECK",
    178: "SOCKET_LOOKUP_FAILED",
    179: "SOCKET_ASSIGN_FAILED",
    180: "PROXY_REDIRECTION_NOT_SUPPORTED_FOR_PROTOCOL",
    181: "POLICY_DENY",
    182: "VLAN_FILTERED",
    183: "INVALID_VNI",
    184: "INVALID_TC_BUFFER",
    185: "NO_SID",
    186: "MISSING_SRV6_STATE",
    187: "NAT46",
    188: "NAT64",
    189: "AUTH_REQUIRED",
    190: "CT_NO_MAP_FOUND",
    191: "SNAT_NO_MAP_FOUND",
    192: "INVALID_CLUSTER_ID",
    193: "UNSUPPORTED_PROTOCOL_FOR_DSR_ENCAP",
    194: "NO_EGRESS_GATEWAY",
    195: "UNENCRYPTED_TRAFFIC",
    196: "TTL_EXCEEDED",
    197: "NO_NODE_ID",
    198: "DROP_RATE_LIMITED",
    199: "IGMP_HANDLED",
    200: "IGMP_SUBSCRIBED",
    201: "MULTICAST_HANDLED",
    202: "DROP_HOST_NOT_READY",
    203: "DROP_EP_NOT_READY",
    204: "DROP_NO_EGRESS_IP",
    205: "DROP_PUNT_PROXY",
}

DEBUG_CAPTURE_POINT_NAMES: dict[int, str] = {
    0: "DBG_CAPTURE_POINT_UNKNOWN",
    4: "DBG_CAPTURE_DELIVERY",
    5: "DBG_CAPTURE_FROM_LB",
    6: "DBG_CAPTURE_AFTER_V46",
    7: "DBG_CAPTURE_AFTER_V64",
    8: "DBG_CAPTURE_PROXY_PRE",
    9: "DBG_CAPTURE_PROXY_POST",
    10: "DBG_CAPTURE_SNAT_PRE",
    11: "DBG_CAPTURE_SNAT_POST",
}
# Capture points whose arg1 is an ifindex, and those whose arg1 is a proxy port (Cilium's debug capture events).
CAPTURE_IFINDEX_POINTS = frozenset({4, 5, 6, 7, 10, 11})
CAPTURE_PROXY_POINTS = frozenset({8, 9})

SOCK_XLATE_POINT_NAMES: dict[int, str] = {
    0: "SOCK_XLATE_POINT_UNKNOWN",
    1: "SOCK_XLATE_POINT_PRE_DIRECTION_FWD",
    2: "SOCK_XLATE_POINT_POST_DIRECTION_FWD",
    3: "SOCK_XLATE_POINT_PRE_DIRECTION_REV",
    4: "SOCK_XLATE_POINT_POST_DIRECTION_REV",
}

_DEBUG_EVENT_TYPES = [
    "DBG_EVENT_UNKNOWN",
    "DBG_GENERIC",
    "DBG_LOCAL_DELIVERY",
    "DBG_ENCAP",
    "DBG_LXC_FOUND",
    "DBG_POLICY_DENIED",
    "DBG_CT_LOOKUP",
    "DBG_CT_LOOKUP_REV",
    "DBG_CT_MATCH",
    "DBG_CT_CREATED",
    "DBG_CT_CREATED2",
    "DBG_ICMP6_HANDLE",
    "DBG_ICMP6_REQUEST",
    "DBG_ICMP6_NS",
    "DBG_ICMP6_TIME_EXCEEDED",
    "DBG_CT_VERDICT",
    "DBG_DECAP",
    "DBG_PORT_MAP",
    "DBG_ERROR_RET",
    "DBG_TO_HOST",
    "DBG_TO_STACK",
    "DBG_PKT_HASH",
    "DBG_LB6_LOOKUP_FRONTEND",
    "DBG_LB6_LOOKUP_FRONTEND_FAIL",
    "DBG_LB6_LOOKUP_BACKEND_SLOT",
    "DBG_LB6_LOOKUP_BACKEND_SLOT_SUCCESS",
    "DBG_LB6_LOOKUP_BACKEND_SLOT_V2_FAIL",
    "DBG_LB6_LOOKUP_BACKEND_FAIL",
    "DBG_LB6_REVERSE_NAT_LOOKUP",
    "DBG_LB6_REVERSE_NAT",
    "DBG_LB4_LOOKUP_FRONTEND",
    "DBG_LB4_LOOKUP_FRONTEND_FAIL",
    "DBG_LB4_LOOKUP_BACKEND_SLOT",
    "DBG_LB4_LOOKUP_BACKEND_SLOT_SUCCESS",
    "DBG_LB4_LOOKUP_BACKEND_SLOT_V2_FAIL",
    "DBG_LB4_LOOKUP_BACKEND_FAIL",
    "DBG_LB4_REVERSE_NAT_LOOKUP",
    "DBG_LB4_REVERSE_NAT",
    "DBG_LB4_LOOPBACK_SNAT",
    "DBG_LB4_LOOPBACK_SNAT_REV",
    "DBG_CT_LOOKUP4",
    "DBG_RR_BACKEND_SLOT_SEL",
    "DBG_REV_PROXY_LOOKUP",
    "DBG_REV_PROXY_FOUND",
    "DBG_REV_PROXY_UPDATE",
    "DBG_L4_POLICY",
    "DBG_NETDEV_IN_CLUSTER",
    "DBG_NETDEV_ENCAP4",
    "DBG_CT_LOOKUP4_1",
    "DBG_CT_LOOKUP4_2",
    "DBG_CT_CREATED4",
    "DBG_CT_LOOKUP6_1",
    "DBG_CT_LOOKUP6_2",
    "DBG_CT_CREATED6",
    "DBG_SKIP_PROXY",
    "DBG_L4_CREATE",
    "DBG_IP_ID_MAP_FAILED4",
    "DBG_IP_ID_MAP_FAILED6",
    "DBG_IP_ID_MAP_SUCCEED4",
    "DBG_IP_ID_MAP_SUCCEED6",
    "DBG_LB_STALE_CT",
    "DBG_INHERIT_IDENTITY",
    "DBG_SK_LOOKUP4",
    "DBG_SK_LOOKUP6",
    "DBG_SK_ASSIGN",
    "DBG_L7_LB",
    "DBG_SKIP_POLICY",
    "DBG_LB6_LOOPBACK_SNAT",
    "DBG_LB6_LOOPBACK_SNAT_REV",
]
DEBUG_EVENT_TYPE_NAMES: dict[int, str] = dict(enumerate(_DEBUG_EVENT_TYPES))

# --- BPF source file ids (drop byte 30 -> Flow.file.name) ----------------------------------------
BPF_FILE_NAMES: dict[int, str] = {
    1: "bpf_host.c",
    2: "bpf_lxc.c",
    3: "bpf_overlay.c",
    4: "bpf_xdp.c",
    5: "bpf_sock.c",
    6: "bpf_network.c",
    7: "bpf_wireguard.c",
    101: "drop.h",
    102: "srv6.h",
    103: "icmp6.h",
    104: "nodeport.h",
    105: "lb.h",
    106: "mcast.h",
    107: "ipv4.h",
    108: "conntrack.h",
    109: "local_delivery.h",
    110: "trace.h",
    111: "encap.h",
    112: "host_firewall.h",
    113: "nodeport_egress.h",
    114: "ipv6.h",
    115: "classifiers.h",
}


def bpf_file_name(file_id: int) -> str:
    """Name of a BPF source file id; unknown ids read ``unknown(<n>)``."""
    return BPF_FILE_NAMES.get(file_id) or f"unknown({file_id})"


# --- reserved security identities (Cilium's pkg/identity) -----------------------------------------
IDENTITY_HOST = 1
IDENTITY_WORLD = 2
RESERVED_IDENTITY_LABELS: dict[int, tuple[str, ...]] = {
    1: ("reserved:host",),
    2: ("reserved:world",),
    3: ("reserved:unmanaged",),
    4: ("reserved:health",),
    5: ("reserved:init",),
    6: ("reserved:remote-node",),
    7: ("reserved:kube-apiserver", "reserved:remote-node"),
    8: ("reserved:ingress",),
    9: ("reserved:world-ipv4",),
    10: ("reserved:world-ipv6",),
}
IDENTITY_SCOPE_SHIFT = 24
IDENTITY_SCOPE_LOCAL = 0x01

# Label key (after the ``source:`` prefix) carrying the cluster name of an endpoint.
CLUSTER_LABEL_KEY = "io.cilium.k8s.policy.cluster="
# Monitor texts of drop reasons (Cilium's pkg/monitor/api DropReason); 159 has none.
DROP_REASON_TEXTS: dict[int, str] = {
    0: "Success",
    2: "Invalid packet",
    3: "Interface",
    4: "Interface Decrypted",
    5: "LB, sock cgroup: No backend slot entry found",
    6: "LB, sock cgroup: No backend entry found",
    7: "LB, sock cgroup: Reverse entry update failed",
    8: "LB, sock cgroup: Reverse entry stale",
    9: "Fragmented packet",
    10: "Fragmented packet entry update failed",
    11: "Missed tail call to custom program",
    12: "Interface Decrypting",
    13: "Interface Encrypting",
    14: "LB: sock cgroup: Reverse entry delete succeeded",
    15: "MTU error message",
    130: "Invalid source mac",
    131: "Invalid destination mac",
    132: "Invalid source ip",
    133: "Policy denied",
    134: "Invalid packet",
    135: "CT: Truncated or invalid header",
    136: "Fragmentation needed",
    137: "CT: Unknown L4 protocol",
    138: "CT: Can't create entry from packet",
    139: "Unsupported L3 protocol",
    140: "Missed tail call",
    141: "Error writing to packet",
    142: "Unknown L4 protocol",
    143: "Unknown ICMPv4 code",
    144: "Unknown ICMPv4 type",
    145: "Unknown ICMPv6 code",
    146: "Unknown ICMPv6 type",
    147: "Error retrieving tunnel key",
    148: "Error retrieving tunnel options",
    149: "Invalid Geneve option",
    150: "Unknown L3 target address",
    151: "Stale or unroutable IP",
    152: "No matching local container found",
    153: "Error while correcting L3 checksum",
    154: "Error while correcting L4 checksum",
    155: "CT: Map insertion failed",
    156: "Invalid IPv6 extension header",
    157: "IP fragmentation not supported",
    158: "Service backend not found",
    160: "No tunnel/encapsulation endpoint (datapath BUG!)",
    161: "NAT 46/64 not enabled",
    162: "Reached EDT rate-limiting drop horizon",
    163: "Unknown connection tracking state",
    164: "Local host is unreachable",
    165: "No configuration available to perform policy decision",
    166: "Unsupported L2 protocol",
    167: "No mapping for NAT masquerade",
    168: "Unsupported protocol for NAT masquerade",
    169: "FIB lookup failed",
    170: "Encapsulation traffic is prohibited",
    171: "Invalid identity",
    172: "Unknown sender",
    173: "NAT not needed",
    174: "Is a ClusterIP",
    175: "First logical datagram fragment not found",
    176: "Forbidden ICMPv6 message",
    177: "Denied by LB src range check",
    178: "Socket lookup failed",
    179: "Socket assign failed",
    180: "Proxy redirection not supported for protocol",
    181: "Policy denied by denylist",
    182: "VLAN traffic disallowed by VLAN filter",
    183: "Incorrect VNI from VTEP",
    184: "Failed to update or lookup TC buffer",
    185: "No SID was found for the IP address",
    186: "SRv6 state was removed during tail call",
    187: "L3 translation from IPv4 to IPv6 failed (NAT46)",
    188: "L3 translation from IPv6 to IPv4 failed (NAT64)",
    189: "Authentication required",
    190: "No conntrack map found",
    191: "No nat map found",
    192: "Invalid ClusterID",
    193: "Unsupported packet protocol for DSR encapsulation",
    194: "No egress gateway found",
    195: "Traffic is unencrypted",
    196: "TTL exceeded",
    197: "No node ID found",
    198: "Rate limited",
    199: "IGMP handled",
    200: "IGMP subscribed",
    201: "Multicast handled",
    202: "Host datapath not ready",
    203: "Endpoint policy program not available",
    204: "No Egress IP configured",
    205: "Punt to proxy",
}
