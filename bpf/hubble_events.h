/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Event records and map layouts shared by the hubblepy tc programs
 * (bpf/endpoint.c) and user space (hubblepy/datapath/layout.py mirrors every
 * struct here with a struct.Struct of the same size).
 *
 * The three event records use Cilium's byte layouts, so a decoder for a real
 * Cilium node's `cilium_events` map reads ours unchanged:
 *   trace notify v2   56 bytes   (type 4)
 *   drop notify v3    48 bytes   (type 1)
 *   policy verdict    40 bytes   (type 5, version 1, with the rule cookie)
 * Multi-byte header fields are host byte order; IP addresses are raw network
 * order bytes. The kernel appends `len_cap` packet bytes after each record
 * (perf_event_output with cap_len in the upper 32 bits of the flags).
 */
#ifndef HUBBLEPY_EVENTS_H
#define HUBBLEPY_EVENTS_H

/* Message types (byte 0 of every event). */
#define HP_NOTIFY_DROP 1
#define HP_NOTIFY_TRACE 4
#define HP_NOTIFY_POLICY_VERDICT 5

#define HP_TRACE_VER 2
#define HP_DROP_VER 3
#define HP_POLICY_VERDICT_VER 1

/* Trace observation points (trace subtype). */
#define HP_TRACE_TO_LXC 0
#define HP_TRACE_TO_PROXY 1              /* dst_id = the proxy port (0 for replies to its upstream sockets) */
#define HP_TRACE_FROM_LXC 5
#define HP_TRACE_FROM_PROXY 6            /* the proxy's upstream connection delivered to the endpoint */

/* Trace reasons = conntrack result. */
#define HP_CT_NEW 0
#define HP_CT_ESTABLISHED 1
#define HP_CT_REPLY 2
#define HP_CT_RELATED 3

/* Drop reasons (positive values of Cilium's negative DROP_* codes). */
#define HP_REASON_FORWARDED 0
#define HP_DROP_POLICY 133
#define HP_DROP_INVALID 134             /* truncated IP header */
#define HP_DROP_PROXY_LOOKUP_FAILED 178 /* no proxy socket: the proxy is down (fail closed) */
#define HP_DROP_PROXY_SET_FAILED 179    /* the proxy socket could not be assigned (or not from this hook) */
#define HP_DROP_PROXY_UNKNOWN_PROTO 180 /* redirect asked for a protocol other than TCP and UDP */
#define HP_DROP_POLICY_DENY 181

/* Classifier flags (trace byte 27, drop byte 36). */
#define HP_CLS_FLAG_IPV6 0x01

/* Policy verdict pv_flags (byte 27): direction in bits 0-1, IPv6 bit 2, match type in bits 3-5,
 * audited bit 6. */
#define HP_PV_DIR_MASK 0x3
#define HP_PV_IPV6_SHIFT 2
#define HP_PV_MATCH_SHIFT 3
#define HP_PV_MATCH_MASK 0x7
#define HP_PV_AUDITED_SHIFT 6

/* Packet bytes appended to each event: the default and the most the config may ask for. */
#define HP_DEFAULT_PAYLOAD_LEN 128
#define HP_MAX_PAYLOAD_LEN 1500

/* Policy directions; also the metric directions (METRIC_INGRESS/EGRESS). */
#define HP_DIR_INGRESS 1
#define HP_DIR_EGRESS 2

/* Policy match types (policy verdict flags bits 3-5). */
#define HP_MATCH_NONE 0
#define HP_MATCH_L3_ONLY 1
#define HP_MATCH_L3_L4 2
#define HP_MATCH_L4_ONLY 3
#define HP_MATCH_ALL 4
#define HP_MATCH_L3_PROTO 5
#define HP_MATCH_PROTO_ONLY 6

/* Source file id reported in drop events (Cilium's id for bpf_lxc.c). */
#define HP_FILE_ID 2

/* skb marks, Cilium's magic values in bits 8-11. The datapath sets HP_MARK_TO_PROXY on packets it
 * steers to the node's proxy (a policy-routing rule in the node namespace routes them locally); the
 * proxy sets HP_MARK_FROM_PROXY (SO_MARK) on its upstream sockets, whose traffic is never
 * redirected again. */
#define HP_MARK_MAGIC_MASK 0x0F00
#define HP_MARK_TO_PROXY 0x0200
#define HP_MARK_FROM_PROXY 0x0A00

/* Reserved identity used for addresses the ipcache does not know. */
#define HP_IDENTITY_WORLD 2

/* ---- wire constants the parser needs ------------------------------------- */

#define HP_IP_FRAG_OFFSET_MASK 0x1FFF    /* fragment offset bits of iphdr.frag_off (host order) */
#define HP_TCP_FLAGS_OFFSET 13           /* byte of the TCP header holding the flags */
#define HP_TCP_SYN 0x02
#define HP_TCP_ACK 0x10
#define HP_ICMP_HDR_LEN 8                /* type, code, checksum, then 4 bytes (echo: id, sequence) */
#define HP_ICMP_ECHO_ID_OFFSET 4

/* ICMPv4 types */
#define HP_ICMP_ECHO_REPLY 0
#define HP_ICMP_DEST_UNREACH 3
#define HP_ICMP_ECHO 8
#define HP_ICMP_TIME_EXCEEDED 11
#define HP_ICMP_PARAMETER_PROB 12
#define HP_ICMP_TIMESTAMP 13
#define HP_ICMP_TIMESTAMP_REPLY 14

/* ICMPv6 types: errors are 1..4; neighbour discovery and MLD (130..137, 143) pass unjudged */
#define HP_ICMP6_ERROR_FIRST 1
#define HP_ICMP6_ERROR_LAST 4
#define HP_ICMP6_ECHO_REQUEST 128
#define HP_ICMP6_ECHO_REPLY 129
#define HP_ICMP6_ND_FIRST 130
#define HP_ICMP6_ND_LAST 137
#define HP_ICMP6_MLD2_REPORT 143

struct hp_notify_common {
    __u8 type;
    __u8 subtype;
    __u16 source;
    __u32 hash;
    __u32 len_orig;
    __u16 len_cap;
    __u8 version;
    __u8 ext_version;
};

struct hp_trace_notify {            /* 56 bytes */
    struct hp_notify_common hdr;    /* 0 */
    __u32 src_label;                /* 16 */
    __u32 dst_label;                /* 20 */
    __u16 dst_id;                   /* 24 */
    __u8 reason;                    /* 26 */
    __u8 flags;                     /* 27 */
    __u32 ifindex;                  /* 28 */
    __u8 orig_ip[16];               /* 32 */
    __u64 ip_trace_id;              /* 48 */
};

struct hp_drop_notify {             /* 48 bytes */
    struct hp_notify_common hdr;    /* 0 */
    __u32 src_label;                /* 16 */
    __u32 dst_label;                /* 20 */
    __u32 dst_id;                   /* 24 */
    __u16 line;                     /* 28 */
    __u8 file;                      /* 30 */
    __s8 ext_error;                 /* 31 */
    __u32 ifindex;                  /* 32 */
    __u8 flags;                     /* 36 */
    __u8 pad2[3];                   /* 37 */
    __u64 ip_trace_id;              /* 40 */
};

struct hp_policy_verdict_notify {   /* 40 bytes */
    struct hp_notify_common hdr;    /* 0 */
    __u32 remote_label;             /* 16 */
    __s32 verdict;                  /* 20 */
    __u16 dst_port;                 /* 24, host order */
    __u8 proto;                     /* 26 */
    __u8 pv_flags;                  /* 27: dir:2 ipv6:1 match_type:3 audited:1 l3:1 */
    __u8 auth_type;                 /* 28 */
    __u8 pad1[3];                   /* 29 */
    __u32 cookie;                   /* 32 */
    __u32 pad2;                     /* 36 */
};

/* ---- maps ---------------------------------------------------------------- */

/* Map sizes (entries). */
#define HP_IPCACHE_MAX 65536
#define HP_ENDPOINTS_MAX 4096
#define HP_POLICY_MAX 65536
#define HP_CONNTRACK_MAX 65536

#define HP_IPV4_ADDR_LEN 4
#define HP_IPV6_ADDR_LEN 16

/* ipcache: LPM trie. prefixlen counts bits after the prefixlen field, so it is
 * 32 (family + pad) + the IP prefix length. */
#define HP_IPCACHE_FIXED_BITS 32
struct hp_ipcache_key {
    __u32 prefixlen;
    __u8 family;                    /* 4 = IPv4, 6 = IPv6 */
    __u8 pad[3];
    __u8 addr[16];                  /* IPv4 uses the first 4 bytes */
};

struct hp_ipcache_value {
    __u32 identity;
    __u32 flags;                    /* unused, 0 */
};

/* local_endpoints: a local pod's address -> its host veth, so the source's hook can judge the
 * destination's ingress policy when it redirects to the proxy (before the node routes the packet). */
struct hp_local_key {
    __u8 family;
    __u8 pad[3];
    __u8 addr[16];                  /* IPv4 uses the first 4 bytes */
};

/* endpoints: keyed by the ifindex of the host side veth. */
#define HP_EP_ENFORCE_INGRESS 0x1
#define HP_EP_ENFORCE_EGRESS 0x2
#define HP_EP_AUDIT 0x4
/* per-policy audit: no entry matched and every policy that engaged default deny is audited */
#define HP_EP_AUDIT_DEFAULT_INGRESS 0x10
#define HP_EP_AUDIT_DEFAULT_EGRESS 0x20
#define HP_EP_HAS_RANGES 0x8         /* port-range entries exist: also look in policy_ranges */

struct hp_endpoint_info {
    __u32 ep_id;
    __u32 identity;
    __u32 flags;
    __u32 pad;
};

/* policy: per endpoint and direction; remote identity 0 = any, dport 0 and
 * proto 0 = any. */
struct hp_policy_key {
    __u32 ep_id;
    __u32 identity;
    __u16 dport;                    /* host order; ICMP type for ICMP */
    __u8 proto;
    __u8 direction;                 /* HP_DIR_INGRESS / HP_DIR_EGRESS */
};

#define HP_POLICY_ALLOW 1
#define HP_POLICY_DENY 2
#define HP_POLICY_AUDIT_DENY 3           /* a deny of an audited policy: passes, verdict AUDIT */

struct hp_policy_value {
    __u8 action;                    /* HP_POLICY_ALLOW / HP_POLICY_DENY / HP_POLICY_AUDIT_DENY */
    __u8 pad;
    __u16 proxy_port;               /* host order; an allow with L7 rules: redirect to this proxy port */
    __u32 cookie;
};

/* policy_ranges: LPM trie for toPorts endPort ranges. hubblepy.datapath splits a range into aligned
 * power-of-two port blocks (at most 30 for any range); each block is one entry whose prefix covers
 * endpoint, direction, protocol, identity and action exactly plus the block's high port bits
 * (port in network byte order, so the trie compares it most significant bit first).
 * prefixlen = HP_RANGE_FIXED_BITS + the block's port prefix length. */
#define HP_RANGE_FIXED_BITS 80
#define HP_RANGE_PORT_BITS 16
struct hp_policy_range_key {
    __u32 prefixlen;
    __u16 ep_id;
    __u8 direction;
    __u8 proto;
    __u32 identity;                 /* 0 = any peer */
    __u8 action;                    /* HP_POLICY_ALLOW / _DENY / _AUDIT_DENY: denies looked up first */
    __u8 pad;
    __u8 port[2];                   /* big-endian */
};

/* conntrack: one entry per endpoint and connection. Both directions share the entry: the key's two
 * (address, port) ends are put in a fixed order, and the value remembers whether the first packet's
 * tuple had to be swapped for that, which tells replies from the originator's packets. */
struct hp_ct_key {
    __u8 saddr[16];
    __u8 daddr[16];
    __u16 sport;                    /* network order; ICMP echo id */
    __u16 dport;
    __u8 proto;
    __u8 family;
    __u16 ep_id;
};

/* Bits of hp_ct_value.seen_fwd / seen_rev: TCP FIN/SYN/RST as on the wire,
 * plus HP_SEEN_PACKET once any packet went that way. */
#define HP_SEEN_FIN 0x01
#define HP_SEEN_SYN 0x02
#define HP_SEEN_RST 0x04
#define HP_SEEN_PACKET 0x80

struct hp_ct_value {
    __u64 last_seen_ns;             /* refreshed at most once a second (sooner for short lifetimes) */
    __u64 packets;                  /* unused (kept 0): a per-packet atomic costs too much */
    __u8 seen_fwd;                  /* direction of the first packet */
    __u8 seen_rev;                  /* the reply direction */
    __u8 direction;                 /* policy direction that created it */
    __u8 audited;
    __u8 orig_swapped;              /* the first packet's tuple was swapped to make the key */
    __u8 proxy_flags;               /* HP_CT_FROM_PROXY */
    __u16 proxy_port;               /* host order: the first packet's direction goes to this proxy port */
};

/* the connection was opened by the proxy (upstream, HP_MARK_FROM_PROXY): its replies go back to
 * the proxy's socket in the node, not to the client */
#define HP_CT_FROM_PROXY 0x01

/* per-CPU counters, index = reason * HP_METRICS_DIRS + direction */
#define HP_METRICS_DIRS 4
#define HP_METRICS_SIZE 1024

struct hp_metrics_value {
    __u64 packets;
    __u64 bytes;
};

/* config: one entry at key 0 */
#define HP_AGGREGATION_NONE 0
#define HP_AGGREGATION_MEDIUM 2

/* Conntrack lifetimes without traffic, in seconds (0 = the default): an expired entry is removed
 * and the next packet is judged as a new connection (Cilium: 6 h TCP, 60 s other, 10 s closing). */
#define HP_CT_LIFETIME_TCP 21600
#define HP_CT_LIFETIME_NONTCP 60
#define HP_CT_LIFETIME_CLOSING 10
#define HP_NSEC_PER_SEC 1000000000ULL
/* last_seen_ns is rewritten at most this often, and at least 4 times per lifetime */
#define HP_CT_REFRESH_MAX_NS HP_NSEC_PER_SEC

struct hp_config {
    __u32 aggregation;
    __u32 payload_len;              /* packet bytes appended to events, 0 = 128 */
    __u32 ct_lifetime_tcp;
    __u32 ct_lifetime_nontcp;
    __u32 ct_lifetime_closing;      /* TCP after FIN or RST */
    __u32 pad;
};

#endif /* HUBBLEPY_EVENTS_H */
