/* SPDX-License-Identifier: Apache-2.0 */
/*
 * hubblepy endpoint datapath: two tc programs for the HOST side of a pod's
 * veth pair, compiled and loaded by hubblepy.datapath with bcc.
 *
 *   from_container  clsact ingress of the host veth = packets the pod sends;
 *                   enforces the pod's EGRESS policy, traces FROM_LXC (5).
 *   to_container    clsact egress of the host veth = packets delivered to the
 *                   pod; enforces the pod's INGRESS policy, traces TO_LXC (0).
 *   local_redirect  tail call of from_container: a local destination pod's
 *                   ingress L7 redirect (see below).
 *   from_outside    clsact ingress of a node interface without endpoints (the
 *                   lab's world veth): the proxy's connections with the world.
 *
 * ARP, IGMP, IPv6 neighbour discovery and MLD pass without policy or events.
 *
 * Per packet: parse L3/L4 -> find the endpoint by ifindex -> remote identity
 * from the ipcache LPM trie (unknown = world) -> conntrack lookup (new,
 * established, reply, related ICMP error) -> only NEW connections are judged
 * by the policy map -> events in Cilium's layouts to the perf event array,
 * each followed by the first packet bytes -> per-CPU counters.
 *
 * L7 redirect: an allow entry with a proxy port sends the connection to the
 * node's transparent proxy. The decision is taken in from_container, before
 * the node routes the packet: for the pod's egress policy, and for the ingress
 * policy of a local destination pod (judged there, as Cilium does on local
 * delivery). The packet gets the proxy's socket (bpf_sk_assign: the
 * connection's own socket, else the listener) and HP_MARK_TO_PROXY, which the
 * node's policy routing (hubblepy.datapath.proxy_routing) delivers locally;
 * conntrack remembers the port for the connection's later packets. No proxy
 * socket: the packet is dropped (fail closed). The proxy's upstream traffic
 * (SO_MARK HP_MARK_FROM_PROXY) is never redirected again, and the server's
 * replies to it are marked so they reach the proxy's socket, not the client.
 * UDP flows (the DNS proxy) always go to the proxy's one unconnected socket.
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

BPF_PERF_OUTPUT(hubble_events);
BPF_LPM_TRIE(ipcache, struct hp_ipcache_key, struct hp_ipcache_value, HP_IPCACHE_MAX);
BPF_HASH(endpoints, __u32, struct hp_endpoint_info, HP_ENDPOINTS_MAX);
BPF_HASH(local_endpoints, struct hp_local_key, __u32, HP_ENDPOINTS_MAX);
BPF_HASH(policy, struct hp_policy_key, struct hp_policy_value, HP_POLICY_MAX);
BPF_LPM_TRIE(policy_ranges, struct hp_policy_range_key, struct hp_policy_value, HP_POLICY_MAX);
BPF_TABLE("lru_hash", struct hp_ct_key, struct hp_ct_value, conntrack, HP_CONNTRACK_MAX);
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

/* The config map entry as this packet uses it (defaults filled in). */
struct hp_settings {
    __u32 aggregation;
    __u32 cap;                      /* packet bytes appended to events, at most the packet's length */
    __u64 lifetime_tcp;             /* conntrack lifetimes in seconds */
    __u64 lifetime_other;
    __u64 lifetime_closing;
};

/* The packet's conntrack state. */
struct hp_ct_state {
    struct hp_ct_key key;           /* canonical key (ep_id set) */
    struct hp_ct_value *entry;      /* NULL until the connection is known */
    __u8 swapped;                   /* this packet's tuple was swapped to make the key */
    __u8 state;                     /* HP_CT_NEW / _ESTABLISHED / _REPLY / _RELATED */
    __u8 fwd;                       /* same direction as the connection's first packet */
};

/* The outcome of judging a new connection. */
struct hp_verdict {
    __s32 verdict;                  /* 0 = allowed, -reason = dropped */
    __u32 cookie;                   /* rule cookie of the deciding entry */
    __u16 proxy_port;               /* allowed with L7 rules: redirect to this proxy port */
    __u8 match;                     /* HP_MATCH_* of the deciding entry */
    __u8 audited;
};

/* How a packet that passed policy leaves the program (see finish()). */
struct hp_outcome {
    __u64 now;
    __u16 proxy_port;               /* give it to the proxy listening on this port */
    __u8 steer;                     /* a reply to the proxy's upstream socket: deliver it in the node */
    __u8 from_proxy;                /* the proxy's upstream traffic */
    __u8 state;                     /* conntrack state; HP_CT_NEW: remember the connection */
    __u8 swapped;
    __u8 bits;                      /* HP_SEEN_* of this packet */
    __u8 audited;
    __u8 report;                    /* send a trace event */
    __u8 pad[7];
};

/* What every event about this packet shares. */
struct hp_event_ctx {
    __u32 cap;
    __u32 ifindex;
    __u32 src_id;                   /* security identities, 0 when not looked up */
    __u32 dst_id;
    __u16 ep_id;                    /* event source */
    __u16 dst_ep;                   /* the endpoint when the packet is delivered to it, else 0 */
    __u8 flags;                     /* HP_CLS_FLAG_* */
    __u8 dir;                       /* HP_DIR_INGRESS / HP_DIR_EGRESS */
};

static __always_inline void count(__u8 reason, __u8 dir, __u32 bytes)
{
    int idx = reason * HP_METRICS_DIRS + dir;
    struct hp_metrics_value *m = metrics.lookup(&idx);
    if (m) {
        m->packets += 1;
        m->bytes += bytes;
    }
}

/* ---- parsing -------------------------------------------------------------- */

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
        __builtin_memcpy(in->saddr, &ip.saddr, HP_IPV4_ADDR_LEN);
        __builtin_memcpy(in->daddr, &ip.daddr, HP_IPV4_ADDR_LEN);
        in->proto = ip.protocol;
        in->family = 4;
        off += ip.ihl * 4;
    } else {
        struct ipv6hdr ip6;
        if (bpf_skb_load_bytes(skb, off, &ip6, sizeof(ip6)) < 0)
            return;
        __builtin_memcpy(in->saddr, &ip6.saddr, HP_IPV6_ADDR_LEN);
        __builtin_memcpy(in->daddr, &ip6.daddr, HP_IPV6_ADDR_LEN);
        in->proto = ip6.nexthdr;
        in->family = 6;
        off += sizeof(ip6);
    }
    if (in->proto == IPPROTO_TCP || in->proto == IPPROTO_UDP || in->proto == IPPROTO_SCTP) {
        if (load_ports(skb, off, in) == 0)
            p->is_icmp_error = 1;
    } else if (in->proto == IPPROTO_ICMP || in->proto == IPPROTO_ICMPV6) {
        __u8 hdr[HP_ICMP_HDR_LEN];
        if (bpf_skb_load_bytes(skb, off, hdr, sizeof(hdr)) < 0)
            return;
        /* quoted echo request: id was the source "port" */
        __builtin_memcpy(&in->sport, &hdr[HP_ICMP_ECHO_ID_OFFSET], 2);
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
        __builtin_memcpy(p->tuple.saddr, &ip.saddr, HP_IPV4_ADDR_LEN);
        __builtin_memcpy(p->tuple.daddr, &ip.daddr, HP_IPV4_ADDR_LEN);
        p->tuple.family = 4;
        proto = ip.protocol;
        frag = (ip.frag_off & HP_HTONS(HP_IP_FRAG_OFFSET_MASK)) != 0;
        off += ip.ihl * 4;
    } else if (skb->protocol == HP_HTONS(ETH_P_IPV6)) {
        struct ipv6hdr ip6;
        if (bpf_skb_load_bytes(skb, off, &ip6, sizeof(ip6)) < 0)
            return -1;
        __builtin_memcpy(p->tuple.saddr, &ip6.saddr, HP_IPV6_ADDR_LEN);
        __builtin_memcpy(p->tuple.daddr, &ip6.daddr, HP_IPV6_ADDR_LEN);
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
        __u8 tcp[HP_TCP_FLAGS_OFFSET + 1];
        if (bpf_skb_load_bytes(skb, off, tcp, sizeof(tcp)) < 0)
            return -1;
        __builtin_memcpy(&p->tuple.sport, &tcp[0], 2);
        __builtin_memcpy(&p->tuple.dport, &tcp[2], 2);
        p->tcp_flags = tcp[HP_TCP_FLAGS_OFFSET];
        p->policy_port = HP_NTOHS(p->tuple.dport);
    } else if (proto == IPPROTO_UDP || proto == IPPROTO_SCTP) {
        if (load_ports(skb, off, &p->tuple) < 0)
            return -1;
        p->policy_port = HP_NTOHS(p->tuple.dport);
    } else if (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6) {
        __u8 icmp[HP_ICMP_HDR_LEN];
        if (bpf_skb_load_bytes(skb, off, icmp, sizeof(icmp)) < 0)
            return -1;
        __u8 type = icmp[0];
        __u8 v4 = proto == IPPROTO_ICMP;
        p->policy_port = type;
        if (!v4 && ((type >= HP_ICMP6_ND_FIRST && type <= HP_ICMP6_ND_LAST) || type == HP_ICMP6_MLD2_REPORT))
            return 0;               /* neighbour discovery and MLD always pass */
        if (v4 ? (type == HP_ICMP_ECHO || type == HP_ICMP_TIMESTAMP) : type == HP_ICMP6_ECHO_REQUEST) {
            __builtin_memcpy(&p->tuple.sport, &icmp[HP_ICMP_ECHO_ID_OFFSET], 2);     /* request */
        } else if (v4 ? (type == HP_ICMP_ECHO_REPLY || type == HP_ICMP_TIMESTAMP_REPLY)
                      : type == HP_ICMP6_ECHO_REPLY) {
            __builtin_memcpy(&p->tuple.dport, &icmp[HP_ICMP_ECHO_ID_OFFSET], 2);     /* reply */
        } else if (v4 ? (type == HP_ICMP_DEST_UNREACH || type == HP_ICMP_TIME_EXCEEDED ||
                         type == HP_ICMP_PARAMETER_PROB)
                      : (type >= HP_ICMP6_ERROR_FIRST && type <= HP_ICMP6_ERROR_LAST)) {
            parse_icmp_inner(skb, off + HP_ICMP_HDR_LEN, p);
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
    if ((ip->frag_off & HP_HTONS(HP_IP_FRAG_OFFSET_MASK)) ||
        (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP))
        return 0;
    __u32 ihl = (ip->ihl & 0xF) * 4;
    __u8 *l4 = (__u8 *)ip + ihl;
    if ((void *)(l4 + HP_TCP_FLAGS_OFFSET + 1) > data_end)
        return 0;
    __builtin_memcpy(p->tuple.saddr, &ip->saddr, HP_IPV4_ADDR_LEN);
    __builtin_memcpy(p->tuple.daddr, &ip->daddr, HP_IPV4_ADDR_LEN);
    p->tuple.family = 4;
    p->tuple.proto = ip->protocol;
    __builtin_memcpy(&p->tuple.sport, l4, 2);
    __builtin_memcpy(&p->tuple.dport, l4 + 2, 2);
    p->policy_port = HP_NTOHS(p->tuple.dport);
    if (ip->protocol == IPPROTO_TCP)
        p->tcp_flags = l4[HP_TCP_FLAGS_OFFSET];
    return 1;
}

/* Same contract as parse_packet_slow. */
static __always_inline int parse_packet(struct __sk_buff *skb, struct hp_packet *p)
{
    if (skb->protocol == HP_HTONS(ETH_P_IP) && parse_ipv4_direct(skb, p))
        return 1;
    return parse_packet_slow(skb, p);
}

/* The state handed to the local_redirect tail call (see handle()). */
struct hp_pending {
    struct hp_packet p;
    struct hp_event_ctx e;
    struct hp_ct_key key;
    struct hp_outcome o;
    __u32 src_identity;
    __u32 pad;
};

BPF_PERCPU_ARRAY(pending, struct hp_pending, 1);
BPF_PROG_ARRAY(tail_progs, 1);
#define HP_TAIL_LOCAL_REDIRECT 0

/* ---- configuration ---------------------------------------------------------- */

static __always_inline void settings_load(struct __sk_buff *skb, struct hp_settings *s)
{
    int zero = 0;
    struct hp_config *cfg = config.lookup(&zero);
    s->aggregation = HP_AGGREGATION_MEDIUM;
    s->cap = HP_DEFAULT_PAYLOAD_LEN;
    s->lifetime_tcp = HP_CT_LIFETIME_TCP;
    s->lifetime_other = HP_CT_LIFETIME_NONTCP;
    s->lifetime_closing = HP_CT_LIFETIME_CLOSING;
    if (cfg) {
        s->aggregation = cfg->aggregation;
        if (cfg->payload_len)
            s->cap = cfg->payload_len;
        if (cfg->ct_lifetime_tcp)
            s->lifetime_tcp = cfg->ct_lifetime_tcp;
        if (cfg->ct_lifetime_nontcp)
            s->lifetime_other = cfg->ct_lifetime_nontcp;
        if (cfg->ct_lifetime_closing)
            s->lifetime_closing = cfg->ct_lifetime_closing;
    }
    if (s->cap > HP_MAX_PAYLOAD_LEN)
        s->cap = HP_MAX_PAYLOAD_LEN;
    if (s->cap > skb->len)
        s->cap = skb->len;
}

/* ---- conntrack -------------------------------------------------------------- */

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

static __always_inline int ct_closing(const struct hp_ct_value *ct)
{
    return ((ct->seen_fwd | ct->seen_rev) & (HP_SEEN_FIN | HP_SEEN_RST)) != 0;
}

static __always_inline void ct_forget(struct hp_ct_state *c)
{
    conntrack.delete(&c->key);
    c->entry = 0;
    c->fwd = 1;
    c->state = HP_CT_NEW;
}

/* Finds the packet's connection: established (same direction as its first packet), reply, related
 * (an ICMP error about a known connection) or new. A fresh SYN on a tuple whose connection was
 * closed starts a new one. */
static __always_inline void ct_lookup(struct hp_ct_state *c, const struct hp_packet *p, __u16 ep_id)
{
    c->key = p->tuple;
    c->key.ep_id = ep_id;
    c->swapped = canonical_key(&c->key);
    c->state = HP_CT_NEW;
    c->fwd = 1;
    c->entry = conntrack.lookup(&c->key);
    if (c->entry) {
        c->fwd = c->swapped == c->entry->orig_swapped;
        c->state = c->fwd ? HP_CT_ESTABLISHED : HP_CT_REPLY;
        if (p->tuple.proto == IPPROTO_TCP && (p->tcp_flags & (HP_TCP_SYN | HP_TCP_ACK)) == HP_TCP_SYN &&
            ct_closing(c->entry))
            ct_forget(c);
    } else if (p->is_icmp_error) {
        struct hp_ct_key ik = p->inner;
        ik.ep_id = ep_id;
        canonical_key(&ik);
        if (conntrack.lookup(&ik))
            c->state = HP_CT_RELATED;
    }
}

/* An entry idle for longer than its lifetime is gone: this packet starts a new connection.
 * Otherwise the time stamp is refreshed, at most once a second (fewer writes to a shared cache
 * line) and often enough that a live flow never looks idle. */
static __always_inline void ct_expire(struct hp_ct_state *c, __u8 proto, const struct hp_settings *s, __u64 now)
{
    struct hp_ct_value *ct = c->entry;
    if (!ct)
        return;
    __u64 lifetime = s->lifetime_other;
    if (proto == IPPROTO_TCP)
        lifetime = ct_closing(ct) ? s->lifetime_closing : s->lifetime_tcp;
    __u64 idle = now - ct->last_seen_ns;
    __u64 lifetime_ns = lifetime * HP_NSEC_PER_SEC;
    __u64 refresh = lifetime_ns >> 2;
    if (refresh > HP_CT_REFRESH_MAX_NS)
        refresh = HP_CT_REFRESH_MAX_NS;
    if (idle > lifetime_ns)
        ct_forget(c);
    else if (idle > refresh)
        ct->last_seen_ns = now;
}

/* Records the packet's SYN/FIN/RST bits (and HP_SEEN_PACKET) for its direction; returns 1 when
 * one of them is new, which monitor aggregation reports. */
static __always_inline int ct_note_flags(struct hp_ct_state *c, __u8 bits)
{
    struct hp_ct_value *ct = c->entry;
    if (!ct)
        return 0;
    __u8 seen = c->fwd ? ct->seen_fwd : ct->seen_rev;
    if (!(bits & ~seen))
        return 0;
    if (c->fwd)
        ct->seen_fwd = seen | bits;
    else
        ct->seen_rev = seen | bits;
    return 1;
}

static __always_inline void ct_create(struct hp_ct_key *key, __u8 swapped, __u64 now, __u8 bits, __u8 dir,
                                      __u8 audited, __u16 proxy_port, __u8 proxy_flags)
{
    struct hp_ct_value nv = {};
    nv.last_seen_ns = now;
    nv.seen_fwd = bits;
    nv.direction = dir;
    nv.audited = audited;
    nv.orig_swapped = swapped;
    nv.proxy_flags = proxy_flags;
    nv.proxy_port = proxy_port;
    conntrack.update(key, &nv);
}

/* ---- identities ------------------------------------------------------------- */

static __always_inline __u32 ipcache_identity(const __u8 *addr, __u8 family)
{
    struct hp_ipcache_key key = {};
    key.family = family;
    if (family == 4) {
        key.prefixlen = HP_IPCACHE_FIXED_BITS + 32;
        __builtin_memcpy(key.addr, addr, HP_IPV4_ADDR_LEN);
    } else {
        key.prefixlen = HP_IPCACHE_FIXED_BITS + 128;
        __builtin_memcpy(key.addr, addr, HP_IPV6_ADDR_LEN);
    }
    struct hp_ipcache_value *v = ipcache.lookup(&key);
    return v ? v->identity : HP_IDENTITY_WORLD;
}

/* ---- policy ----------------------------------------------------------------- */

/* A policy entry copied out of its map, with the match type it was found at (action 0 = none).
 * Copies, not map pointers: no pointer stays live across the lookups, which keeps the verifier's
 * state count down. */
struct hp_decision {
    __u32 cookie;
    __u16 proxy_port;
    __u8 action;
    __u8 match;
};

/* The entries a lookup found so far: the first (most specific) audit-only deny and allow. */
struct hp_candidates {
    struct hp_decision allow;
    struct hp_decision audit;
};

static __always_inline void take(struct hp_decision *d, const struct hp_policy_value *v, __u8 match)
{
    d->cookie = v->cookie;
    d->proxy_port = v->proxy_port;
    d->action = v->action;
    d->match = match;
}

/* Keeps v (found at match type `match`) as a candidate; returns 1 when it is an enforced deny, which
 * decides at once (Cilium's deny precedence) and is copied to *out. */
static __always_inline int consider(struct hp_candidates *c, struct hp_decision *out,
                                    const struct hp_policy_value *v, __u8 match)
{
    if (!v)
        return 0;
    if (v->action == HP_POLICY_DENY) {
        take(out, v, match);
        return 1;
    }
    if (v->action == HP_POLICY_AUDIT_DENY) {
        if (!c->audit.action)
            take(&c->audit, v, match);
    } else if (!c->allow.action) {
        take(&c->allow, v, match);
    }
    return 0;
}

static __always_inline struct hp_policy_value *
exact_get(struct hp_policy_key *k, __u32 identity, __u16 dport, __u8 proto)
{
    k->identity = identity;
    k->dport = dport;
    k->proto = proto;
    return policy.lookup(k);
}

/* The range entry (endPort) of one action covering dport: for the remote identity first
 * (HP_MATCH_L3_L4), then for any peer (HP_MATCH_L4_ONLY), with its type in *match; or NULL. */
static __always_inline struct hp_policy_value *
range_get(__u16 ep_id, __u8 dir, __u8 proto, __u32 remote, __u8 action, __u16 dport, __u8 *match)
{
    struct hp_policy_range_key k = {};
    k.prefixlen = HP_RANGE_FIXED_BITS + HP_RANGE_PORT_BITS;
    k.ep_id = ep_id;
    k.direction = dir;
    k.proto = proto;
    k.identity = remote;
    k.action = action;
    k.port[0] = dport >> 8;
    k.port[1] = dport & 0xff;
    struct hp_policy_value *v = policy_ranges.lookup(&k);
    *match = HP_MATCH_L3_L4;
    if (v)
        return v;
    k.identity = 0;
    *match = HP_MATCH_L4_ONLY;
    return policy_ranges.lookup(&k);
}

/* Finds the entry that decides a new connection into *out (action 0: none, the default deny).
 * The exact keys are tried in Cilium's order, most specific first: L3+L4, L3+proto, L3-only,
 * L4-only, proto-only, allow-all; then the port ranges (only for endpoints that have some). An
 * enforced deny at any level wins over every allow; then an audit-only deny (a deny rule of a
 * policy in audit mode), if some entry allows the packet; otherwise the most specific allow
 * decides. Only new connections get here, so the lookups cost little. */
static __always_inline void policy_lookup(__u16 ep_id, __u32 remote, __u16 dport, __u8 proto, __u8 dir,
                                          __u8 has_ranges, struct hp_decision *out)
{
    struct hp_policy_key k = {};
    struct hp_candidates c = {};
    struct hp_policy_value *v;
    __u8 m;
    k.ep_id = ep_id;
    k.direction = dir;
    out->action = 0;
    out->match = HP_MATCH_NONE;
    out->cookie = 0;
    out->proxy_port = 0;

    if (consider(&c, out, exact_get(&k, remote, dport, proto), HP_MATCH_L3_L4) ||
        consider(&c, out, exact_get(&k, remote, 0, proto), HP_MATCH_L3_PROTO) ||
        consider(&c, out, exact_get(&k, remote, 0, 0), HP_MATCH_L3_ONLY) ||
        consider(&c, out, exact_get(&k, 0, dport, proto), HP_MATCH_L4_ONLY) ||
        consider(&c, out, exact_get(&k, 0, 0, proto), HP_MATCH_PROTO_ONLY) ||
        consider(&c, out, exact_get(&k, 0, 0, 0), HP_MATCH_ALL))
        return;

    if (has_ranges && proto) {
        /* enforced denies first; audit-only denies after an exact audit-only deny; allows only
         * when no exact entry allowed */
        v = range_get(ep_id, dir, proto, remote, HP_POLICY_DENY, dport, &m);
        if (v) {
            take(out, v, m);
            return;
        }
        if (!c.audit.action) {
            v = range_get(ep_id, dir, proto, remote, HP_POLICY_AUDIT_DENY, dport, &m);
            if (v)
                take(&c.audit, v, m);
        }
        if (!c.allow.action) {
            v = range_get(ep_id, dir, proto, remote, HP_POLICY_ALLOW, dport, &m);
            if (v)
                take(&c.allow, v, m);
        }
    }
    /* an audit-only deny decides only when some entry allows the packet: without an allow the
     * default deny decides (enforced unless the endpoint's default deny is audited too) */
    *out = c.audit.action && c.allow.action ? c.audit : c.allow;
}

/* Judges a new connection of an endpoint that enforces policy in direction dir. */
static __always_inline void policy_judge(__u16 ep_id, __u32 ep_flags, __u32 remote, const struct hp_packet *p,
                                         __u8 dir, struct hp_verdict *out)
{
    struct hp_decision d;
    policy_lookup(ep_id, remote, p->policy_port, p->tuple.proto, dir, (ep_flags & HP_EP_HAS_RANGES) != 0, &d);
    __u32 default_audit = dir == HP_DIR_INGRESS ? HP_EP_AUDIT_DEFAULT_INGRESS : HP_EP_AUDIT_DEFAULT_EGRESS;
    out->verdict = 0;
    out->cookie = d.cookie;
    out->match = d.match;
    out->proxy_port = 0;
    out->audited = 0;
    if (!d.action) {
        out->verdict = -HP_DROP_POLICY;
        if (ep_flags & default_audit) {
            out->verdict = 0;
            out->audited = 1;
        }
    } else if (d.action == HP_POLICY_AUDIT_DENY) {
        out->audited = 1;
    } else if (d.action != HP_POLICY_ALLOW) {
        out->verdict = -HP_DROP_POLICY_DENY;
    } else {
        out->proxy_port = d.proxy_port;
    }
    if (out->verdict < 0 && (ep_flags & HP_EP_AUDIT)) {
        out->audited = 1;
        out->verdict = 0;
    }
}

/* ---- events ----------------------------------------------------------------- */

static __always_inline void fill_common(struct __sk_buff *skb, struct hp_notify_common *h, __u8 type,
                                        __u8 subtype, const struct hp_event_ctx *e, __u8 version)
{
    h->type = type;
    h->subtype = subtype;
    h->source = e->ep_id;
    h->hash = bpf_get_hash_recalc(skb);
    h->len_orig = skb->len;
    h->len_cap = e->cap;
    h->version = version;
}

static __always_inline void emit_policy_verdict(struct __sk_buff *skb, const struct hp_event_ctx *e,
                                                __u32 remote, const struct hp_packet *p,
                                                const struct hp_verdict *v)
{
    struct hp_policy_verdict_notify pvn;
    __builtin_memset(&pvn, 0, sizeof(pvn));
    fill_common(skb, &pvn.hdr, HP_NOTIFY_POLICY_VERDICT, 0, e, HP_POLICY_VERDICT_VER);
    pvn.remote_label = remote;
    /* Cilium's convention: a redirected connection's verdict is the proxy port */
    pvn.verdict = v->verdict ? v->verdict : v->proxy_port;
    pvn.dst_port = p->policy_port;
    pvn.proto = p->tuple.proto;
    pvn.pv_flags = (e->dir & HP_PV_DIR_MASK) | ((e->flags & HP_CLS_FLAG_IPV6) << HP_PV_IPV6_SHIFT) |
                   ((v->match & HP_PV_MATCH_MASK) << HP_PV_MATCH_SHIFT) | (v->audited << HP_PV_AUDITED_SHIFT);
    pvn.cookie = v->cookie;
    hubble_events.perf_submit_skb(skb, e->cap, &pvn, sizeof(pvn));
}

static __always_inline void emit_drop(struct __sk_buff *skb, const struct hp_event_ctx *e, __u8 reason, __u16 line)
{
    struct hp_drop_notify dn;
    __builtin_memset(&dn, 0, sizeof(dn));
    fill_common(skb, &dn.hdr, HP_NOTIFY_DROP, reason, e, HP_DROP_VER);
    dn.src_label = e->src_id;
    dn.dst_label = e->dst_id;
    dn.dst_id = e->dst_ep;
    dn.line = line;
    dn.file = HP_FILE_ID;
    dn.ifindex = e->ifindex;
    dn.flags = e->flags;
    hubble_events.perf_submit_skb(skb, e->cap, &dn, sizeof(dn));
}

static __always_inline void emit_trace(struct __sk_buff *skb, const struct hp_event_ctx *e, __u8 obs,
                                       __u16 dst_id, __u8 reason)
{
    struct hp_trace_notify tn;
    __builtin_memset(&tn, 0, sizeof(tn));
    fill_common(skb, &tn.hdr, HP_NOTIFY_TRACE, obs, e, HP_TRACE_VER);
    tn.src_label = e->src_id;
    tn.dst_label = e->dst_id;
    tn.dst_id = dst_id;
    tn.reason = reason;
    tn.flags = e->flags;
    tn.ifindex = e->ifindex;
    hubble_events.perf_submit_skb(skb, e->cap, &tn, sizeof(tn));
}

/* ---- proxy redirect ---------------------------------------------------------- */

/* The packet's connection as a socket lookup tuple (from the packet's sender's side); returns the
 * tuple size the lookup helpers expect for the family. */
static __always_inline __u32 sock_tuple(struct bpf_sock_tuple *t, const struct hp_packet *p)
{
    if (p->tuple.family == 4) {
        __builtin_memcpy(&t->ipv4.saddr, p->tuple.saddr, HP_IPV4_ADDR_LEN);
        __builtin_memcpy(&t->ipv4.daddr, p->tuple.daddr, HP_IPV4_ADDR_LEN);
        t->ipv4.sport = p->tuple.sport;
        t->ipv4.dport = p->tuple.dport;
        return sizeof(t->ipv4);
    }
    __builtin_memcpy(t->ipv6.saddr, p->tuple.saddr, HP_IPV6_ADDR_LEN);
    __builtin_memcpy(t->ipv6.daddr, p->tuple.daddr, HP_IPV6_ADDR_LEN);
    t->ipv6.sport = p->tuple.sport;
    t->ipv6.dport = p->tuple.dport;
    return sizeof(t->ipv6);
}

/* UDP (the DNS proxy): every datagram of a redirected flow goes to the proxy's one unconnected
 * socket bound to the wildcard address and the proxy port (IP_RECVORIGDSTADDR tells it the original
 * destination). Returns 0 or the drop reason, as proxy_assign. */
static __always_inline int proxy_assign_udp(struct __sk_buff *skb, const struct hp_packet *p, __u16 proxy_port)
{
    struct bpf_sock_tuple t = {};
    __u32 size;
    if (p->tuple.family == 4) {
        t.ipv4.dport = HP_HTONS(proxy_port);
        size = sizeof(t.ipv4);
    } else {
        t.ipv6.dport = HP_HTONS(proxy_port);
        size = sizeof(t.ipv6);
    }
    struct bpf_sock *sk = bpf_sk_lookup_udp(skb, &t, size, BPF_F_CURRENT_NETNS, 0);
    if (!sk)
        return HP_DROP_PROXY_LOOKUP_FAILED;
    long err = bpf_sk_assign(skb, sk, 0);
    bpf_sk_release(sk);
    if (err)
        return HP_DROP_PROXY_SET_FAILED;
    skb->mark = HP_MARK_TO_PROXY;
    return 0;
}

/* Gives the packet to the proxy: the proxy's socket of this connection when it has one (established
 * or still in the handshake), else its transparent listener on proxy_port; then the mark that makes
 * the node deliver it locally. Returns 0, or the drop reason when there is no socket to give it to
 * (the proxy is down: fail closed). */
static __always_inline int proxy_assign(struct __sk_buff *skb, const struct hp_packet *p, __u16 proxy_port)
{
    struct bpf_sock_tuple t = {};
    struct bpf_sock *sk;
    long err;

    if (p->tuple.proto == IPPROTO_UDP)
        return proxy_assign_udp(skb, p, proxy_port);
    if (p->tuple.proto != IPPROTO_TCP)
        return HP_DROP_PROXY_UNKNOWN_PROTO;
    __u32 size = sock_tuple(&t, p);
    sk = bpf_skc_lookup_tcp(skb, &t, size, BPF_F_CURRENT_NETNS, 0);
    if (sk && (sk->state == BPF_TCP_LISTEN || sk->state == BPF_TCP_TIME_WAIT)) {
        bpf_sk_release(sk);
        sk = 0;
    }
    if (!sk) {
        /* the listener: any address, the proxy port */
        __builtin_memset(&t, 0, sizeof(t));
        if (p->tuple.family == 4)
            t.ipv4.dport = HP_HTONS(proxy_port);
        else
            t.ipv6.dport = HP_HTONS(proxy_port);
        sk = bpf_skc_lookup_tcp(skb, &t, size, BPF_F_CURRENT_NETNS, 0);
        if (!sk)
            return HP_DROP_PROXY_LOOKUP_FAILED;
    }
    err = bpf_sk_assign(skb, sk, 0);
    bpf_sk_release(sk);
    if (err)
        return HP_DROP_PROXY_SET_FAILED;
    skb->mark = HP_MARK_TO_PROXY;
    return 0;
}

/* The ingress policy of a local destination pod, judged at the source's hook: bpf_sk_assign only
 * works before the node routes the packet, so a redirect for the destination's L7 rules is decided
 * here (Cilium judges the destination's policy on local delivery too). When the destination allows
 * the connection with a proxy port, emits the destination's policy verdict and returns the port;
 * otherwise returns 0 and the destination's own hook judges the connection as usual. */
static __always_inline __u16 local_ingress_redirect(struct __sk_buff *skb, const struct hp_event_ctx *src,
                                                    const struct hp_packet *p, __u32 src_identity,
                                                    struct hp_event_ctx *dst_events)
{
    struct hp_local_key k = {};
    k.family = p->tuple.family;
    __builtin_memcpy(k.addr, p->tuple.daddr, HP_IPV6_ADDR_LEN);
    __u32 *dst_ifindex = local_endpoints.lookup(&k);
    if (!dst_ifindex)
        return 0;
    __u32 ifindex = *dst_ifindex;
    struct hp_endpoint_info *dst = endpoints.lookup(&ifindex);
    if (!dst || !(dst->flags & HP_EP_ENFORCE_INGRESS))
        return 0;
    struct hp_verdict v;
    __u16 dst_ep = dst->ep_id;
    policy_judge(dst_ep, dst->flags, src_identity, p, HP_DIR_INGRESS, &v);
    if (v.verdict < 0 || !v.proxy_port)
        return 0;
    *dst_events = *src;
    dst_events->ep_id = dst_ep;
    dst_events->dst_ep = dst_ep;
    dst_events->dst_id = dst->identity;
    dst_events->dir = HP_DIR_INGRESS;
    emit_policy_verdict(skb, dst_events, src_identity, p, &v);
    return v.proxy_port;
}

/* ---- the endpoint programs ---------------------------------------------------- */

/* Fills the identities of the events: the endpoint's own and the peer's from the ipcache.
 * Returns the remote identity. */
static __always_inline __u32 resolve_identities(struct hp_event_ctx *e, const struct hp_packet *p, __u32 local_id)
{
    if (e->dir == HP_DIR_EGRESS) {
        e->src_id = local_id;
        e->dst_id = ipcache_identity(p->tuple.daddr, p->tuple.family);
        return e->dst_id;
    }
    e->src_id = ipcache_identity(p->tuple.saddr, p->tuple.family);
    e->dst_id = local_id;
    return e->src_id;
}

/* The way out of a packet that passed policy: to the proxy when asked (no proxy socket: dropped,
 * and a new connection is not remembered, so its retry is judged again), a new connection
 * remembered, the trace event, the counters. */
static __always_inline int finish(struct __sk_buff *skb, const struct hp_packet *p, const struct hp_event_ctx *e,
                                  struct hp_ct_key *key, struct hp_outcome *o)
{
    __u8 steer = o->steer;
    if (o->proxy_port) {
        int reason = proxy_assign(skb, p, o->proxy_port);
        if (reason) {
            emit_drop(skb, e, reason, __LINE__);
            count(reason, e->dir, skb->len);
            return TC_ACT_SHOT;
        }
        steer = 1;
    } else if (steer) {
        skb->mark = HP_MARK_TO_PROXY;  /* reply to the proxy's upstream socket: the node delivers it locally */
    }
    if (o->state == HP_CT_NEW)
        ct_create(key, o->swapped, o->now, o->bits, e->dir, o->audited, o->proxy_port,
                  o->from_proxy ? HP_CT_FROM_PROXY : 0);
    if (o->report) {
        __u8 obs = e->dir == HP_DIR_EGRESS ? HP_TRACE_FROM_LXC : HP_TRACE_TO_LXC;
        __u16 trace_dst = e->dst_ep;
        if (steer) {
            obs = HP_TRACE_TO_PROXY;
            trace_dst = o->proxy_port;
        } else if (o->from_proxy) {
            obs = HP_TRACE_FROM_PROXY;
        }
        emit_trace(skb, e, obs, trace_dst, o->state);
    }
    count(HP_REASON_FORWARDED, e->dir, skb->len);
    return TC_ACT_OK;
}

/* Whether the packet's destination is a local pod that enforces ingress policy. */
static __always_inline int local_destination_enforces(const struct hp_packet *p)
{
    struct hp_local_key k = {};
    k.family = p->tuple.family;
    __builtin_memcpy(k.addr, p->tuple.daddr, HP_IPV6_ADDR_LEN);
    __u32 *dst_ifindex = local_endpoints.lookup(&k);
    if (!dst_ifindex)
        return 0;
    __u32 ifindex = *dst_ifindex;
    struct hp_endpoint_info *dst = endpoints.lookup(&ifindex);
    return dst && (dst->flags & HP_EP_ENFORCE_INGRESS);
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
        count(HP_DROP_INVALID, dir, skb->len);
        return TC_ACT_SHOT;
    }

    struct hp_settings s;
    settings_load(skb, &s);
    __u16 ep_id = ep->ep_id;
    __u32 local_id = ep->identity;
    __u32 ep_flags = ep->flags;

    struct hp_ct_state c;
    struct hp_outcome o = {};
    ct_lookup(&c, &p, ep_id);
    o.now = bpf_ktime_get_coarse_ns();  /* jiffy resolution is plenty for lifetimes in seconds, and 4x cheaper */
    ct_expire(&c, p.tuple.proto, &s, o.now);
    o.state = c.state;
    o.swapped = c.swapped;

    /* monitor aggregation: what gets a trace event */
    o.bits = HP_SEEN_PACKET;
    if (p.tuple.proto == IPPROTO_TCP)
        o.bits |= p.tcp_flags & (HP_SEEN_FIN | HP_SEEN_SYN | HP_SEEN_RST);
    o.report = s.aggregation == HP_AGGREGATION_NONE || c.state == HP_CT_NEW || c.state == HP_CT_RELATED;
    if (ct_note_flags(&c, o.bits))
        o.report = 1;

    struct hp_event_ctx e = {};
    e.cap = s.cap;
    e.ifindex = ifindex;
    e.ep_id = ep_id;
    e.dst_ep = dir == HP_DIR_INGRESS ? ep_id : 0;
    e.flags = p.tuple.family == 6 ? HP_CLS_FLAG_IPV6 : 0;
    e.dir = dir;
    /* identities are only needed to judge or to report: most packets need neither */
    __u32 remote_id = 0;
    if (o.report)
        remote_id = resolve_identities(&e, &p, local_id);

    /* the proxy: a connection redirected from this pod, a reply to the proxy's upstream
     * connection, the proxy's upstream traffic itself */
    if (c.entry) {
        if (dir == HP_DIR_INGRESS)
            o.from_proxy = c.fwd && (c.entry->proxy_flags & HP_CT_FROM_PROXY);
        else if (c.fwd)
            o.proxy_port = c.entry->proxy_port;
        else
            o.steer = c.entry->proxy_flags & HP_CT_FROM_PROXY;
    } else if (dir == HP_DIR_INGRESS) {
        o.from_proxy = (skb->mark & HP_MARK_MAGIC_MASK) == HP_MARK_FROM_PROXY;
    }

    /* policy: only new connections are judged */
    if (c.state != HP_CT_NEW)
        return finish(skb, &p, &e, &c.key, &o);
    __u32 enforce = dir == HP_DIR_INGRESS ? HP_EP_ENFORCE_INGRESS : HP_EP_ENFORCE_EGRESS;
    if (ep_flags & enforce) {
        struct hp_verdict v;
        int quiet = 0;
        policy_judge(ep_id, ep_flags, remote_id, &p, dir, &v);
        if (dir == HP_DIR_INGRESS && v.proxy_port) {
            if (o.from_proxy)
                quiet = 1;  /* verdict given at the source's hook with the redirect; the proxy applied the L7 rules */
            else
                v.verdict = -HP_DROP_PROXY_SET_FAILED;  /* no socket can be assigned here: fail closed */
            v.proxy_port = 0;
        }
        if (!quiet)
            emit_policy_verdict(skb, &e, remote_id, &p, &v);
        if (v.verdict < 0) {
            __u8 reason = (__u8)(-v.verdict);
            emit_drop(skb, &e, reason, __LINE__);
            count(reason, dir, skb->len);
            return TC_ACT_SHOT;
        }
        o.audited = v.audited;
        o.proxy_port = v.proxy_port;
    }
    /* a local destination's ingress policy may redirect too: judged in a tail call (one program
     * judging both would be too much for the verifier); without the tail program, on as usual */
    if (dir == HP_DIR_EGRESS && !o.proxy_port && local_destination_enforces(&p)) {
        int zero = 0;
        struct hp_pending *pend = pending.lookup(&zero);
        if (pend) {
            pend->p.tuple = p.tuple;
            pend->p.policy_port = p.policy_port;
            pend->e = e;
            pend->key = c.key;
            pend->o = o;
            pend->src_identity = local_id;
            tail_progs.call(skb, HP_TAIL_LOCAL_REDIRECT);
        }
    }
    return finish(skb, &p, &e, &c.key, &o);
}

/* Tail call of from_container for a new connection to a local pod that enforces ingress policy:
 * that pod's ingress policy may redirect the connection to the proxy. */
int local_redirect(struct __sk_buff *skb)
{
    int zero = 0;
    struct hp_pending *pend = pending.lookup(&zero);
    if (!pend)
        return TC_ACT_SHOT;
    struct hp_event_ctx dst_events;
    pend->o.proxy_port = local_ingress_redirect(skb, &pend->e, &pend->p, pend->src_identity, &dst_events);
    return finish(skb, &pend->p, &pend->e, &pend->key, &pend->o);
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

/* The connection of a socket in the node namespace that a packet from outside belongs to: only
 * the proxy's transparent sockets use pod addresses there (its upstream sockets, and the sockets
 * it accepted for connections from outside). Gives the packet that socket and the mark that
 * delivers it locally; returns 1 when it did. */
static __always_inline int outside_to_socket(struct __sk_buff *skb, const struct hp_packet *p)
{
    struct bpf_sock_tuple t = {};
    __u32 size = sock_tuple(&t, p);
    int done = 0;
    struct bpf_sock *sk = bpf_skc_lookup_tcp(skb, &t, size, BPF_F_CURRENT_NETNS, 0);
    if (!sk)
        return 0;
    if (sk->state != BPF_TCP_LISTEN && sk->state != BPF_TCP_TIME_WAIT && bpf_sk_assign(skb, sk, 0) == 0) {
        skb->mark = HP_MARK_TO_PROXY;
        done = 1;
    }
    bpf_sk_release(sk);
    return done;
}

/* A UDP reply from outside to one of the DNS proxy's upstream sockets: a connected socket bound to
 * exactly the packet's destination (a pod address, which only the proxy's transparent sockets use in
 * the node namespace) and connected to its source. Wildcard-bound sockets are never chosen: traffic
 * to pods must not end up in some local service. Gives the packet that socket and the mark that
 * delivers it locally. */
static __always_inline void outside_to_udp_socket(struct __sk_buff *skb, const struct hp_packet *p)
{
    struct bpf_sock_tuple t = {};
    __u32 size = sock_tuple(&t, p);
    struct bpf_sock *sk = bpf_sk_lookup_udp(skb, &t, size, BPF_F_CURRENT_NETNS, 0);
    if (!sk)
        return;
    int exact;
    if (p->tuple.family == 4) {
        __u32 want;
        __builtin_memcpy(&want, p->tuple.daddr, HP_IPV4_ADDR_LEN);
        exact = sk->src_ip4 == want && sk->dst_ip4 != 0;
    } else {
        __u32 want[4];
        __builtin_memcpy(want, p->tuple.daddr, HP_IPV6_ADDR_LEN);
        exact = sk->src_ip6[0] == want[0] && sk->src_ip6[1] == want[1] && sk->src_ip6[2] == want[2] &&
                sk->src_ip6[3] == want[3] && sk->dst_port != 0;
    }
    if (exact && sk->dst_port != 0 && bpf_sk_assign(skb, sk, 0) == 0)
        skb->mark = HP_MARK_TO_PROXY;
    bpf_sk_release(sk);
}

/* clsact ingress of a node interface without endpoint programs (the lab's world veth, an uplink).
 * Packets of the proxy's connections go to its sockets (replies to its upstream connections, and
 * the later packets of connections it took over); a new TCP connection to a local pod whose ingress
 * policy has L7 rules for it goes to the proxy, like from_container does for pods (its policy
 * verdict, trace to-proxy and drop when there is no proxy socket come from the destination's
 * endpoint). Everything else passes untouched, without events: the destination's hook judges it. */
int from_outside(struct __sk_buff *skb)
{
    struct hp_packet p = {};
    int parsed = parse_packet(skb, &p);
    if (parsed == 1 && p.tuple.proto == IPPROTO_UDP) {
        outside_to_udp_socket(skb, &p);
        return TC_ACT_OK;
    }
    if (parsed != 1 || p.tuple.proto != IPPROTO_TCP)
        return TC_ACT_OK;
    if (outside_to_socket(skb, &p))
        return TC_ACT_OK;
    if ((p.tcp_flags & (HP_TCP_SYN | HP_TCP_ACK)) != HP_TCP_SYN || !local_destination_enforces(&p))
        return TC_ACT_OK;

    struct hp_settings s;
    settings_load(skb, &s);
    struct hp_event_ctx e = {};
    e.cap = s.cap;
    e.ifindex = skb->ifindex;
    e.flags = p.tuple.family == 6 ? HP_CLS_FLAG_IPV6 : 0;
    e.dir = HP_DIR_INGRESS;
    e.src_id = ipcache_identity(p.tuple.saddr, p.tuple.family);
    struct hp_event_ctx dst_events;
    __u16 proxy_port = local_ingress_redirect(skb, &e, &p, e.src_id, &dst_events);
    if (!proxy_port)
        return TC_ACT_OK;
    int reason = proxy_assign(skb, &p, proxy_port);
    if (reason) {
        emit_drop(skb, &dst_events, reason, __LINE__);
        count(reason, HP_DIR_INGRESS, skb->len);
        return TC_ACT_SHOT;
    }
    emit_trace(skb, &dst_events, HP_TRACE_TO_PROXY, proxy_port, HP_CT_NEW);
    count(HP_REASON_FORWARDED, HP_DIR_INGRESS, skb->len);
    return TC_ACT_OK;
}
