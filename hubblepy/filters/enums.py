"""Enum name/number tables of flow.proto needed by the filters.

Filters and flows may carry an enum either as its name (canonical JSON) or as a bare number
(unknown values, or non-canonical input), so every table maps names to numbers and
:func: expands a filter value into every spelling a flow may use.
"""

from __future__ import annotations

VERDICT: dict[str, int] = {
    "VERDICT_UNKNOWN": 0,
    "FORWARDED": 1,
    "DROPPED": 2,
    "ERROR": 3,
    "AUDIT": 4,
    "REDIRECTED": 5,
    "TRACED": 6,
    "TRANSLATED": 7,
}

TRAFFIC_DIRECTION: dict[str, int] = {"TRAFFIC_DIRECTION_UNKNOWN": 0, "INGRESS": 1, "EGRESS": 2}

IP_VERSION: dict[str, int] = {"IP_NOT_USED": 0, "IPv4": 1, "IPv6": 2}

DROP_REASON: dict[str, int] = {
    "DROP_REASON_UNKNOWN": 0,
    "INVALID_SOURCE_MAC": 130,
    "INVALID_DESTINATION_MAC": 131,
    "INVALID_SOURCE_IP": 132,
    "POLICY_DENIED": 133,
    "INVALID_PACKET_DROPPED": 134,
    "CT_TRUNCATED_OR_INVALID_HEADER": 135,
    "CT_MISSING_TCP_ACK_FLAG": 136,
    "CT_UNKNOWN_L4_PROTOCOL": 137,
    "CT_CANNOT_CREATE_ENTRY_FROM_PACKET": 138,
    "UNSUPPORTED_L3_PROTOCOL": 139,
    "MISSED_TAIL_CALL": 140,
    "ERROR_WRITING_TO_PACKET": 141,
    "UNKNOWN_L4_PROTOCOL": 142,
    "UNKNOWN_ICMPV4_CODE": 143,
    "UNKNOWN_ICMPV4_TYPE": 144,
    "UNKNOWN_ICMPV6_CODE": 145,
    "UNKNOWN_ICMPV6_TYPE": 146,
    "ERROR_RETRIEVING_TUNNEL_KEY": 147,
    "ERROR_RETRIEVING_TUNNEL_OPTIONS": 148,
    "INVALID_GENEVE_OPTION": 149,
    "UNKNOWN_L3_TARGET_ADDRESS": 150,
    "STALE_OR_UNROUTABLE_IP": 151,
    "NO_MATCHING_LOCAL_CONTAINER_FOUND": 152,
    "ERROR_WHILE_CORRECTING_L3_CHECKSUM": 153,
    "ERROR_WHILE_CORRECTING_L4_CHECKSUM": 154,
    "CT_MAP_INSERTION_FAILED": 155,
    "INVALID_IPV6_EXTENSION_HEADER": 156,
    "IP_FRAGMENTATION_NOT_SUPPORTED": 157,
    "SERVICE_BACKEND_NOT_FOUND": 158,
    "NO_TUNNEL_OR_ENCAPSULATION_ENDPOINT": 160,
    "FAILED_TO_INSERT_INTO_PROXYMAP": 161,
    "REACHED_EDT_RATE_LIMITING_DROP_HORIZON": 162,
    "UNKNOWN_CONNECTION_TRACKING_STATE": 163,
    "LOCAL_HOST_IS_UNREACHABLE": 164,
    "NO_CONFIGURATION_AVAILABLE_TO_PERFORM_POLICY_DECISION": 165,
    "UNSUPPORTED_L2_PROTOCOL": 166,
    "NO_MAPPING_FOR_NAT_MASQUERADE": 167,
    "UNSUPPORTED_PROTOCOL_FOR_NAT_MASQUERADE": 168,
    "FIB_LOOKUP_FAILED": 169,
    "ENCAPSULATION_TRAFFIC_IS_PROHIBITED": 170,
    "INVALID_IDENTITY": 171,
    "UNKNOWN_SENDER": 172,
    "NAT_NOT_NEEDED": 173,
    "IS_A_CLUSTERIP": 174,
    "FIRST_LOGICAL_DATAGRAM_FRAGMENT_NOT_FOUND": 175,
    "FORBIDDEN_ICMPV6_MESSAGE": 176,
    "DENIED_BY_LB_SRC_RANGE_CHECK": 177,
    "SOCKET_LOOKUP_FAILED": 178,
    "SOCKET_ASSIGN_FAILED": 179,
    "PROXY_REDIRECTION_NOT_SUPPORTED_FOR_PROTOCOL": 180,
    "POLICY_DENY": 181,
    "VLAN_FILTERED": 182,
    "INVALID_VNI": 183,
    "INVALID_TC_BUFFER": 184,
    "NO_SID": 185,
    "MISSING_SRV6_STATE": 186,
    "NAT46": 187,
    "NAT64": 188,
    "AUTH_REQUIRED": 189,
    "CT_NO_MAP_FOUND": 190,
    "SNAT_NO_MAP_FOUND": 191,
    "INVALID_CLUSTER_ID": 192,
    "UNSUPPORTED_PROTOCOL_FOR_DSR_ENCAP": 193,
    "NO_EGRESS_GATEWAY": 194,
    "UNENCRYPTED_TRAFFIC": 195,
    "TTL_EXCEEDED": 196,
    "NO_NODE_ID": 197,
    "DROP_RATE_LIMITED": 198,
    "IGMP_HANDLED": 199,
    "IGMP_SUBSCRIBED": 200,
    "MULTICAST_HANDLED": 201,
    "DROP_HOST_NOT_READY": 202,
    "DROP_EP_NOT_READY": 203,
    "DROP_NO_EGRESS_IP": 204,
    "DROP_PUNT_PROXY": 205,
}


def both_forms(table: dict[str, int], value: str | int, what: str) -> tuple[str | int, ...]:
    """Return every JSON spelling of one enum value: its name (if known) and its number.

    Raises ValueError (turned into a FilterError by the caller) for an unknown name.
    """
    if isinstance(value, bool):
        raise ValueError(f"invalid {what} value: {value!r}")
    if isinstance(value, int):
        for name, number in table.items():
            if number == value:
                return (name, number)
        return (value,)
    if isinstance(value, str):
        if value in table:
            return (value, table[value])
        # A decimal string is accepted leniently as the enum number.
        if value.lstrip("-").isdigit():
            return both_forms(table, int(value), what)
    raise ValueError(f"invalid {what} value: {value!r}")


def default_name(table: dict[str, int]) -> str:
    """The name of the zero value, which canonical JSON omits."""
    for name, number in table.items():
        if number == 0:
            return name
    raise KeyError("enum without a zero value")
