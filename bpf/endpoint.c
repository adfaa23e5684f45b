/* SPDX-License-Identifier: Apache-2.0 */
/*
 * hubblepy endpoint datapath: two tc programs for the HOST side of a pod's
 * veth pair, compiled and loaded by hubblepy.datapath with bcc.
 *
 *   from_container  clsact ingress of the host veth = packets the pod sends;
 *                   enforces the pod's EGRESS policy, traces FROM_LXC (5).
 *   to_container    clsact egress of the host veth = packets delivered to the
 *                   pod; enforces the pod's INGRESS policy, traces TO_LXC (0).
 *
 * ARP, IGMP, IPv6 neighbour discovery and MLD pass without policy or events.
 *
 * Per packet: parse L3/L4 -> find the endpoint by ifindex -> remote identity
 * from the ipcache LPM trie (unknown = world) -> conntrack lookup (new,
 * established, reply, related ICMP error) -> only NEW connections are judged
 * by the policy map -> events in Cilium's layouts to the perf event array,
 * each followed by the first packet bytes -> per-CPU counters.
 */
#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/in.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/ipv6.h>
#include <uapi/linux/pkt_cls.h>

#include "hubble_events.h"

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define HP_HTONS(x) ((__u16)__builtin_bswap16(x))
#else
#define HP_HTONS(x) ((__u16)(x))
#endif
#define HP_NTOHS(x) HP_HTONS(x)

#define HP_DEFAULT_PAYLOAD_LEN 128
#define HP_MAX_PAYLOAD_LEN 1500

BPF_PERF_OUTPUT(hubble_events);
BPF_LPM_TRIE(ipcache, struct hp_ipcache_key, struct hp_ipcache_value, 65536);
BPF_HASH(endpoints, __u32, struct hp_endpoint_info, 4096);
BPF_HASH(policy, struct hp_policy_key, struct hp_policy_value, 65536);
BPF_LPM_TRIE(policy_ranges, struct hp_policy_range_key, struct hp_policy_value, 65536);
BPF_TABLE("lru_hash", struct hp_ct_key, struct hp_ct_value, conntrack, 65536);
BPF_PERCPU_ARRAY(metrics, struct hp_metrics_value, HP_METRICS_SIZE);
BPF_ARRAY(config, struct hp_config, 1);

/* What the parser extracts from one packet. */
struct hp_packet {
    struct hp_ct_key tuple;         /* addresses/ports as on the wire, ep_id 0 */
    struct hp_ct_key inner;         /* ICMP errors: the quoted packet's tuple */
    __u16 policy_port;              /* host order dport, ICMP type for ICMP */
    __u8 tcp_flags;
    __u8 is_icmp_error;
};

static __always_inline void count(__u8 reason, __u8 dir, __u32 bytes)
{
    int idx = reason * 4 + dir;
    struct hp_metrics_value *m = metrics.lookup(&idx);
    if (m) {
        m->packets += 1;
        m->bytes += bytes;
    }
}

/* Reads the L4 ports of a TCP/UDP/SCTP header at off into the tuple. */
static __always_inline int load_ports(struct __sk_buff *skb, __u32 off, struct hp_ct_key *t)
{
    __u16 ports[2];
    if (bpf_skb_load_bytes(skb, off, ports, sizeof(ports)) < 0)
        return -1;
    t->sport = ports[0];
    t->dport = ports[1];
    return 0;
}

/* Parses the packet quoted inside an ICMP error (IPv4 or IPv6 header plus at
 * least 8 bytes of L4) into p->inner. */
static __always_inline void parse_icmp_inner(struct __sk_buff *skb, __u32 off, struct hp_packet *p)
{
    struct hp_ct_key *in = &p->inner;
    if (p->tuple.family == 4) {
        struct iphdr ip;
        if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)) < 0)
            return;
        __builtin_memcpy(in->saddr, &ip.saddr, 4);
        __builtin_memcpy(in->daddr, &ip.daddr, 4);
        in->proto = ip.protocol;
        in->family = 4;
        off += ip.ihl * 4;
    } else {
        struct ipv6hdr ip6;
        if (bpf_skb_load_bytes(skb, off, &ip6, sizeof(ip6)) < 0)
            return;
        __builtin_memcpy(in->saddr, &ip6.saddr, 16);
        __builtin_memcpy(in->daddr, &ip6.daddr, 16);
        in->proto = ip6.nexthdr;
        in->family = 6;
        off += sizeof(ip6);
    }
    if (in->proto == IPPROTO_TCP || in->proto == IPPROTO_UDP || in->proto == IPPROTO_SCTP) {
        if (load_ports(skb, off, in) == 0)
            p->is_icmp_error = 1;
    } else if (in->proto == IPPROTO_ICMP || in->proto == IPPROTO_ICMPV6) {
        __u8 hdr[8];
        if (bpf_skb_load_bytes(skb, off, hdr, sizeof(hdr)) < 0)
            return;
        /* quoted echo request: id was the source "port" */
        __builtin_memcpy(&in->sport, &hdr[4], 2);
        in->dport = 0;
        p->is_icmp_error = 1;
    }
}

/* General parser with bpf_skb_load_bytes: IPv4 and IPv6, any L4, non-linear skbs. Returns 1 for
 * IP packets, 0 for packets the datapath ignores (ARP, IGMP, IPv6 neighbour discovery and MLD),
 * -1 for truncated IP packets. */
static __always_inline int parse_packet_slow(struct __sk_buff *skb, struct hp_packet *p)
{
    __u32 off = ETH_HLEN;
    __u8 proto;
    int frag = 0;

    if (skb->protocol == HP_HTONS(ETH_P_IP)) {
        struct iphdr ip;
        if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)) < 0)
            return -1;
        __builtin_memcpy(p->tuple.saddr, &ip.saddr, 4);
        __builtin_memcpy(p->tuple.daddr, &ip.daddr, 4);
        p->tuple.family = 4;
        proto = ip.protocol;
        frag = (ip.frag_off & HP_HTONS(0x1FFF)) != 0;
        off += ip.ihl * 4;
    } else if (skb->protocol == HP_HTONS(ETH_P_IPV6)) {
        struct ipv6hdr ip6;
        if (bpf_skb_load_bytes(skb, off, &ip6, sizeof(ip6)) < 0)
            return -1;
        __builtin_memcpy(p->tuple.saddr, &ip6.saddr, 16);
        __builtin_memcpy(p->tuple.daddr, &ip6.daddr, 16);
        p->tuple.family = 6;
        proto = ip6.nexthdr;        /* extension headers are not walked */
        off += sizeof(ip6);
    } else {
        return 0;
    }
    p->tuple.proto = proto;
    if (proto == IPPROTO_IGMP)
        return 0;                   /* group management passes unjudged, like IPv6 MLD below */
    if (frag)
        return 1;                   /* non-first fragment: no L4 header */

    if (proto == IPPROTO_TCP) {
        __u8 tcp[14];
        if (bpf_skb_load_bytes(skb, off, tcp, sizeof(tcp)) < 0)
            return -1;
        __builtin_memcpy(&p->tuple.sport, &tcp[0], 2);
        __builtin_memcpy(&p->tuple.dport, &tcp[2], 2);
        p->tcp_flags = tcp[13];
        p->policy_port = HP_NTOHS(p->tuple.dport);
    } else if (proto == IPPROTO_UDP || proto == IPPROTO_SCTP) {
        if (load_ports(skb, off, &p->tuple) < 0)
            return -1;
        p->policy_port = HP_NTOHS(p->tuple.dport);
    } else if (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6) {
        __u8 icmp[8];
        if (bpf_skb_load_bytes(skb, off, icmp, sizeof(icmp)) < 0)
            return -1;
        __u8 type = icmp[0];
        p->policy_port = type;
        if (proto == IPPROTO_ICMPV6 && ((type >= 130 && type <= 137) || type == 143))
            return 0;               /* neighbour discovery and MLD always pass */
        if ((proto == IPPROTO_ICMP && (type == 8 || type == 13)) ||
            (proto == IPPROTO_ICMPV6 && type == 128)) {
            __builtin_memcpy(&p->tuple.sport, &icmp[4], 2);     /* request */
        } else if ((proto == IPPROTO_ICMP && (type == 0 || type == 14)) ||
                   (proto == IPPROTO_ICMPV6 && type == 129)) {
            __builtin_memcpy(&p->tuple.dport, &icmp[4], 2);     /* reply */
        } else if ((proto == IPPROTO_ICMP && (type == 3 || type == 11 || type == 12)) ||
                   (proto == IPPROTO_ICMPV6 && type >= 1 && type <= 4)) {
            parse_icmp_inner(skb, off + 8, p);
        }
    }
    return 1;
}

/* Fast path for the common case, unfragmented IPv4 TCP/UDP with the headers in the linear part
 * of the skb: reads them in place instead of copying with bpf_skb_load_bytes. Returns 1 when it
 * parsed the packet, 0 to fall back to parse_packet_slow. */
static __always_inline int parse_ipv4_direct(struct __sk_buff *skb, struct hp_packet *p)
{
    void *data = (void *)(long)skb->data;
    void *data_end = (void *)(long)skb->data_end;
    struct iphdr *ip = data + ETH_HLEN;
    if ((void *)(ip + 1) > data_end)
        return 0;
    if ((ip->frag_off & HP_HTONS(0x1FFF)) || (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP))
        return 0;
    __u32 ihl = (ip->ihl & 0xF) * 4;
    __u8 *l4 = (__u8 *)ip + ihl;
    if ((void *)(l4 + 14) > data_end)
        return 0;
    __builtin_memcpy(p->tuple.saddr, &ip->saddr, 4);
    __builtin_memcpy(p->tuple.daddr, &ip->daddr, 4);
    p->tuple.family = 4;
    p->tuple.proto = ip->protocol;
    __builtin_memcpy(&p->tuple.sport, l4, 2);
    __builtin_memcpy(&p->tuple.dport, l4 + 2, 2);
    p->policy_port = HP_NTOHS(p->tuple.dport);
    if (ip->protocol == IPPROTO_TCP)
        p->tcp_flags = l4[13];
    return 1;
}

/* Same contract as parse_packet_slow. */
static __always_inline int parse_packet(struct __sk_buff *skb, struct hp_packet *p)
{
    if (skb->protocol == HP_HTONS(ETH_P_IP) && parse_ipv4_direct(skb, p))
        return 1;
    return parse_packet_slow(skb, p);
}

/* Orders a tuple's two (address, port) ends so that both directions of a connection map to one
 * conntrack key; returns 1 when the ends were swapped. The order itself is arbitrary but fixed. */
static __always_inline __u8 canonical_key(struct hp_ct_key *k)
{
    __u64 s0, s1, d0, d1;
    __builtin_memcpy(&s0, &k->saddr[0], 8);
    __builtin_memcpy(&s1, &k->saddr[8], 8);
    __builtin_memcpy(&d0, &k->daddr[0], 8);
    __builtin_memcpy(&d1, &k->daddr[8], 8);
    if (s0 < d0 || (s0 == d0 && (s1 < d1 || (s1 == d1 && k->sport <= k->dport))))
        return 0;
    __builtin_memcpy(&k->saddr[0], &d0, 8);
    __builtin_memcpy(&k->saddr[8], &d1, 8);
    __builtin_memcpy(&k->daddr[0], &s0, 8);
    __builtin_memcpy(&k->daddr[8], &s1, 8);
    __u16 port = k->sport;
    k->sport = k->dport;
    k->dport = port;
    return 1;
}

static __always_inline __u32 ipcache_identity(const __u8 *addr, __u8 family)
{
    struct hp_ipcache_key key = {};
    key.family = family;
    if (family == 4) {
        key.prefixlen = 32 + 32;
        __builtin_memcpy(key.addr, addr, 4);
    } else {
        key.prefixlen = 32 + 128;
        __builtin_memcpy(key.addr, addr, 16);
    }
    struct hp_ipcache_value *v = ipcache.lookup(&key);
    return v ? v->identity : HP_IDENTITY_WORLD;
}

/* Judges a new connection against the endpoint's policy map. The keys are tried in Cilium's order,
 * most specific first: L3+L4, L3+proto, L3-only, L4-only, proto-only, allow-all. A deny entry at
 * any of these levels wins over every allow (Cilium's deny precedence); then an audit-only deny (a
 * deny rule of a policy in audit mode) at any level, if some entry allows the packet; otherwise the
 * most specific allow decides.
 * Only new connections get here, so the six lookups cost little.
 * Returns the deciding entry or NULL; *match gets its POLICY_MATCH_* type. */
static __always_inline struct hp_policy_value *
policy_get(struct hp_policy_key *k, __u32 identity, __u16 dport, __u8 proto)
{
    k->identity = identity;
    k->dport = dport;
    k->proto = proto;
    return policy.lookup(k);
}

/* The range entry (endPort) covering dport for one identity and action, or NULL. */
static __always_inline struct hp_policy_value *
range_get(__u32 ep_id, __u8 dir, __u8 proto, __u32 identity, __u8 action, __u16 dport)
{
    struct hp_policy_range_key k = {};
    k.prefixlen = HP_RANGE_FIXED_BITS + 16;
    k.ep_id = ep_id;
    k.direction = dir;
    k.proto = proto;
    k.identity = identity;
    k.action = action;
    k.port[0] = dport >> 8;
    k.port[1] = dport & 0xff;
    return policy_ranges.lookup(&k);
}

static __always_inline struct hp_policy_value *
policy_lookup(__u32 ep_id, __u32 remote, __u16 dport, __u8 proto, __u8 dir, __u8 has_ranges, __u8 *match)
{
    struct hp_policy_key k = {};
    struct hp_policy_value *v, *allow = 0, *audit = 0;
    __u8 allow_match = HP_MATCH_NONE, audit_match = HP_MATCH_NONE;
    k.ep_id = ep_id;
    k.direction = dir;

#define HP_TRY(id_, port_, proto_, type_)                                   \
    v = policy_get(&k, (id_), (port_), (proto_));                           \
    if (v) {                                                                \
        if (v->action == HP_POLICY_DENY) { *match = (type_); return v; }    \
        if (v->action == HP_POLICY_AUDIT_DENY) {                            \
            if (!audit) { audit = v; audit_match = (type_); }               \
        } else if (!allow) { allow = v; allow_match = (type_); }            \
    }

    HP_TRY(remote, dport, proto, HP_MATCH_L3_L4)
    HP_TRY(remote, 0, proto, HP_MATCH_L3_PROTO)
    HP_TRY(remote, 0, 0, HP_MATCH_L3_ONLY)
    HP_TRY(0, dport, proto, HP_MATCH_L4_ONLY)
    HP_TRY(0, 0, proto, HP_MATCH_PROTO_ONLY)
    HP_TRY(0, 0, 0, HP_MATCH_ALL)
#undef HP_TRY
    /* port ranges (endPort), only for endpoints that have some: enforced denies first, then
     * audit-only denies, then allows when no exact entry allowed */
    if (has_ranges && proto) {
        v = range_get(ep_id, dir, proto, remote, HP_POLICY_DENY, dport);
        if (v) { *match = HP_MATCH_L3_L4; return v; }
        v = range_get(ep_id, dir, proto, 0, HP_POLICY_DENY, dport);
        if (v) { *match = HP_MATCH_L4_ONLY; return v; }
        /* audit-only range denies (endPort deny of an audited policy): after every enforced
         * deny, and after an exact audit-only deny */
        if (!audit_match) {
            v = range_get(ep_id, dir, proto, remote, HP_POLICY_AUDIT_DENY, dport);
            if (v) {
                audit = v;
                audit_match = HP_MATCH_L3_L4;
            } else {
                v = range_get(ep_id, dir, proto, 0, HP_POLICY_AUDIT_DENY, dport);
                if (v) {
                    audit = v;
                    audit_match = HP_MATCH_L4_ONLY;
                }
            }
        }
        if (!allow_match) {
            v = range_get(ep_id, dir, proto, remote, HP_POLICY_ALLOW, dport);
            if (v) {
                allow = v;
                allow_match = HP_MATCH_L3_L4;
            } else {
                v = range_get(ep_id, dir, proto, 0, HP_POLICY_ALLOW, dport);
                if (v) {
                    allow = v;
                    allow_match = HP_MATCH_L4_ONLY;
                }
            }
        }
    }
    /* an audit-only deny decides only when some entry allows the packet: without an allow the
     * default deny decides (enforced unless the endpoint's default deny is audited too). The
     * match types are tested, not the pointers: the verifier refuses logic on two map pointers. */
    if (audit_match && allow_match) {
        *match = audit_match;
        return audit;
    }
    *match = allow_match;
    return allow;
}

static __always_inline void fill_common(struct __sk_buff *skb, struct hp_notify_common *h, __u8 type,
                                        __u8 subtype, __u16 source, __u32 cap, __u8 version)
{
    h->type = type;
    h->subtype = subtype;
    h->source = source;
    h->hash = bpf_get_hash_recalc(skb);
    h->len_orig = skb->len;
    h->len_cap = cap;
    h->version = version;
}

static __always_inline int handle(struct __sk_buff *skb, __u8 dir)
{
    /* dir = the policy direction this hook enforces for its pod */
    __u32 ifindex = skb->ifindex;
    struct hp_endpoint_info *ep = endpoints.lookup(&ifindex);
    if (!ep)
        return TC_ACT_OK;           /* not one of ours (yet) */

    struct hp_packet p = {};
    int ok = parse_packet(skb, &p);
    if (ok == 0)
        return TC_ACT_OK;
    if (ok < 0) {
        /* truncated IP header: Cilium drops these as invalid */
        count(134, dir, skb->len);
        return TC_ACT_SHOT;
    }

    int zero = 0;
    struct hp_config *cfg = config.lookup(&zero);
    __u32 aggregation = cfg ? cfg->aggregation : HP_AGGREGATION_MEDIUM;
    __u32 cap = cfg && cfg->payload_len ? cfg->payload_len : HP_DEFAULT_PAYLOAD_LEN;
    if (cap > HP_MAX_PAYLOAD_LEN)
        cap = HP_MAX_PAYLOAD_LEN;
    if (cap > skb->len)
        cap = skb->len;

    __u64 lt_tcp = HP_CT_LIFETIME_TCP, lt_other = HP_CT_LIFETIME_NONTCP, lt_closing = HP_CT_LIFETIME_CLOSING;
    if (cfg) {
        if (cfg->ct_lifetime_tcp)
            lt_tcp = cfg->ct_lifetime_tcp;
        if (cfg->ct_lifetime_nontcp)
            lt_other = cfg->ct_lifetime_nontcp;
        if (cfg->ct_lifetime_closing)
            lt_closing = cfg->ct_lifetime_closing;
    }

    __u16 ep_id = ep->ep_id;
    __u32 local_id = ep->identity;
    __u32 ep_flags = ep->flags;
    __u8 v6 = p.tuple.family == 6;

    /* ---- conntrack: one entry per connection and endpoint, both directions share it ---- */
    struct hp_ct_key key = p.tuple;
    key.ep_id = ep_id;
    __u8 swapped = canonical_key(&key);
    __u8 state = HP_CT_NEW;
    __u8 fwd = 1;
    struct hp_ct_value *ct = conntrack.lookup(&key);
    if (ct) {
        fwd = swapped == ct->orig_swapped;
        state = fwd ? HP_CT_ESTABLISHED : HP_CT_REPLY;
        /* a fresh SYN on a tuple whose connection was closed starts anew */
        if (p.tuple.proto == IPPROTO_TCP && (p.tcp_flags & 0x12) == 0x02 &&
            ((ct->seen_fwd | ct->seen_rev) & (HP_SEEN_FIN | HP_SEEN_RST))) {
            conntrack.delete(&key);
            ct = 0;
            fwd = 1;
            state = HP_CT_NEW;
        }
    } else if (p.is_icmp_error) {
        struct hp_ct_key ik = p.inner;
        ik.ep_id = ep_id;
        canonical_key(&ik);
        if (conntrack.lookup(&ik))
            state = HP_CT_RELATED;
    }

    /* an entry idle for longer than its lifetime is gone: this packet starts a new connection */
    __u64 now = bpf_ktime_get_coarse_ns();  /* jiffy resolution is plenty for lifetimes in seconds, and 4x cheaper */
    if (ct) {
        __u64 lifetime = lt_other;
        if (p.tuple.proto == IPPROTO_TCP)
            lifetime = ((ct->seen_fwd | ct->seen_rev) & (HP_SEEN_FIN | HP_SEEN_RST)) ? lt_closing : lt_tcp;
        __u64 idle = now - ct->last_seen_ns;
        __u64 lifetime_ns = lifetime * 1000000000ULL;
        /* refresh the timestamp at most once a second (fewer writes to a shared line), and
         * often enough that a live flow never looks idle */
        __u64 refresh = lifetime_ns >> 2;
        if (refresh > 1000000000ULL)
            refresh = 1000000000ULL;
        if (idle > lifetime_ns) {
            conntrack.delete(&key);
            ct = 0;
            fwd = 1;
            state = HP_CT_NEW;
        } else if (idle > refresh) {
            ct->last_seen_ns = now;
        }
    }

    /* ---- monitor aggregation: what gets a trace event ---- */
    __u8 bits = HP_SEEN_PACKET;
    if (p.tuple.proto == IPPROTO_TCP)
        bits |= p.tcp_flags & (HP_SEEN_FIN | HP_SEEN_SYN | HP_SEEN_RST);
    int report = aggregation == HP_AGGREGATION_NONE || state == HP_CT_NEW || state == HP_CT_RELATED;
    if (ct) {
        __u8 seen = fwd ? ct->seen_fwd : ct->seen_rev;
        if (bits & ~seen) {
            report = 1;
            if (fwd)
                ct->seen_fwd = seen | bits;
            else
                ct->seen_rev = seen | bits;
        }
    }

    /* identities are only needed to judge or to report: most packets need neither */
    __u32 remote_id = 0, src_id = 0, dst_id = 0;
    if (report) {
        if (dir == HP_DIR_EGRESS) {
            remote_id = ipcache_identity(p.tuple.daddr, p.tuple.family);
            src_id = local_id;
            dst_id = remote_id;
        } else {
            remote_id = ipcache_identity(p.tuple.saddr, p.tuple.family);
            src_id = remote_id;
            dst_id = local_id;
        }
    }

    /* ---- policy: only new connections are judged ---- */
    if (state == HP_CT_NEW) {
        __u32 enforce = dir == HP_DIR_INGRESS ? HP_EP_ENFORCE_INGRESS : HP_EP_ENFORCE_EGRESS;
        __u8 audited = 0;
        if (ep_flags & enforce) {
            __u8 match = HP_MATCH_NONE;
            struct hp_policy_value *pv =
                policy_lookup(ep_id, remote_id, p.policy_port, p.tuple.proto, dir,
                              (ep_flags & HP_EP_HAS_RANGES) != 0, &match);
            __s32 verdict = 0;
            __u32 cookie = 0;
            __u32 default_audit =
                dir == HP_DIR_INGRESS ? HP_EP_AUDIT_DEFAULT_INGRESS : HP_EP_AUDIT_DEFAULT_EGRESS;
            if (!pv) {
                verdict = -HP_DROP_POLICY;
                if (ep_flags & default_audit) {
                    verdict = 0;
                    audited = 1;
                }
            } else {
                cookie = pv->cookie;
                if (pv->action == HP_POLICY_AUDIT_DENY)
                    audited = 1;
                else if (pv->action != HP_POLICY_ALLOW)
                    verdict = -HP_DROP_POLICY_DENY;
            }
            if (verdict < 0 && (ep_flags & HP_EP_AUDIT)) {
                audited = 1;
                verdict = 0;
            }

            struct hp_policy_verdict_notify pvn;
            __builtin_memset(&pvn, 0, sizeof(pvn));
            fill_common(skb, &pvn.hdr, HP_NOTIFY_POLICY_VERDICT, 0, ep_id, cap, HP_POLICY_VERDICT_VER);
            pvn.remote_label = remote_id;
            pvn.verdict = verdict;
            pvn.dst_port = p.policy_port;
            pvn.proto = p.tuple.proto;
            pvn.pv_flags = (dir & 0x3) | (v6 << 2) | ((match & 0x7) << 3) | (audited << 6);
            pvn.cookie = cookie;
            hubble_events.perf_submit_skb(skb, cap, &pvn, sizeof(pvn));

            if (verdict < 0) {
                __u8 reason = (__u8)(-verdict);
                struct hp_drop_notify dn;
                __builtin_memset(&dn, 0, sizeof(dn));
                fill_common(skb, &dn.hdr, HP_NOTIFY_DROP, reason, ep_id, cap, HP_DROP_VER);
                dn.src_label = src_id;
                dn.dst_label = dst_id;
                dn.dst_id = dir == HP_DIR_INGRESS ? ep_id : 0;
                dn.line = __LINE__;
                dn.file = HP_FILE_ID;
                dn.ifindex = ifindex;
                dn.flags = v6 ? HP_CLS_FLAG_IPV6 : 0;
                hubble_events.perf_submit_skb(skb, cap, &dn, sizeof(dn));
                count(reason, dir, skb->len);
                return TC_ACT_SHOT;
            }
        }
        struct hp_ct_value nv = {};
        nv.last_seen_ns = now;
        nv.seen_fwd = bits;
        nv.direction = dir;
        nv.audited = audited;
        nv.orig_swapped = swapped;
        conntrack.update(&key, &nv);
    }

    if (report) {
        struct hp_trace_notify tn;
        __builtin_memset(&tn, 0, sizeof(tn));
        __u8 obs = dir == HP_DIR_EGRESS ? HP_TRACE_FROM_LXC : HP_TRACE_TO_LXC;
        fill_common(skb, &tn.hdr, HP_NOTIFY_TRACE, obs, ep_id, cap, HP_TRACE_VER);
        tn.src_label = src_id;
        tn.dst_label = dst_id;
        tn.dst_id = dir == HP_DIR_INGRESS ? ep_id : 0;
        tn.reason = state;
        tn.flags = v6 ? HP_CLS_FLAG_IPV6 : 0;
        tn.ifindex = ifindex;
        hubble_events.perf_submit_skb(skb, cap, &tn, sizeof(tn));
    }
    count(HP_REASON_FORWARDED, dir, skb->len);
    return TC_ACT_OK;
}

/* clsact ingress of the host veth: the pod is sending. */
int from_container(struct __sk_buff *skb)
{
    return handle(skb, HP_DIR_EGRESS);
}

/* clsact egress of the host veth: the packet is delivered to the pod. */
int to_container(struct __sk_buff *skb)
{
    return handle(skb, HP_DIR_INGRESS);
}
