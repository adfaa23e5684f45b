"""The flow metric families, by upstream Hubble's names, labels, label values and types.

A handler never walks a batch itself. :class:`hubblepy.metrics.registry.FlowMetrics` groups a
batch by a signature of the fields the enabled handlers read (built column by column with C-level
``map``/``zip``, then counted with :class:`collections.Counter`), and calls
:meth:`Handler.count` once per distinct signature with one representative flow and the number of
flows that share it. ``needs`` names the signature columns a handler reads (see
``hubblepy.metrics.registry.COLUMNS``); L7 flows (DNS, HTTP), whose labels and latencies vary per
flow, are passed one by one. The Prometheus client is touched once per label set per batch.

Cardinality guard: a family holds at most ``max_series`` label sets (``--metrics-max-series``,
default 5000). A new label set beyond that keeps the values of the family's bounded labels (enums
such as ``verdict``, ``reason``, ``protocol``, ``type``) and has every other label (context labels,
ports, DNS queries, HTTP methods and status codes) set to ``overflow``; such flows are still
counted, and ``hubble_metrics_series_overflow_total{metric}`` counts them.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter
from prometheus_client import Histogram as PromHistogram

from hubblepy.metrics.config import MetricSpec
from hubblepy.metrics.context import compile_context, context_needs
from hubblepy.parser.packet import icmp_type_code_string  # gopacket's TypeCode.String()

Flow = dict[str, Any]
_EMPTY: dict[str, Any] = {}
OVERFLOW = "overflow"
DEFAULT_MAX_SERIES = 5000

MSG_DROP, MSG_CAPTURE, MSG_TRACE, MSG_POLICY_VERDICT, MSG_ACCESS_LOG = 1, 3, 4, 5, 129
IDENTITY_HOST = 1
TRACE_POINTS = {
    0: "to-endpoint",
    1: "to-proxy",
    2: "to-host",
    3: "to-stack",
    4: "to-overlay",
    5: "from-endpoint",
    6: "from-proxy",
    7: "from-host",
    8: "from-stack",
    9: "from-overlay",
    10: "from-network",
    11: "to-network",
    12: "from-crypto",
    13: "to-crypto",
}
POLICY_MATCH = {0: "none", 1: "l3-only", 2: "l3-l4", 3: "l4-only", 4: "all", 5: "l3-proto", 6: "proto-only"}
_L4_PROTOCOLS = {"TCP": "TCP", "UDP": "UDP", "ICMPv4": "ICMPv4", "ICMPv6": "ICMPv6", "SCTP": "SCTP"}
_L4_PROTOCOLS |= {"VRRP": "VRRP", "IGMP": "IGMP"}
DNS_RCODES = {
    0: "No Error",
    1: "Format Error",
    2: "Server Failure",
    3: "Non-Existent Domain",
    4: "Not Implemented",
    5: "Query Refused",
    6: "Name Exists when it should not",
    7: "RR Set Exists when it should not",
    8: "RR Set that should exist does not",
    9: "Not Authorized",
    10: "Name not contained in zone",
    11: "DSO-TYPE Not Implemented",
    16: "Bad OPT Version",
    17: "Key not recognized",
    18: "Signature out of time window",
    19: "Bad TKEY Mode",
    20: "Duplicate key name",
    21: "Algorithm not supported",
    22: "Bad Truncation",
    23: "Bad/missing Server Cookie",
}


def flow_protocol(flow: Flow) -> str:
    """Upstream's FlowProtocol: the L7 protocol of L7 flows, else the L4 protocol."""
    etype = (flow.get("event_type") or _EMPTY).get("type", 0)
    if etype == MSG_ACCESS_LOG:
        l7 = flow.get("l7") or _EMPTY
        if "dns" in l7:
            return "DNS"
        if "http" in l7:
            return "HTTP"
        return "Unknown L7"
    if etype in (MSG_DROP, MSG_TRACE, MSG_POLICY_VERDICT, MSG_CAPTURE):
        for key in flow.get("l4") or _EMPTY:
            proto = _L4_PROTOCOLS.get(key)
            if proto is not None:
                return proto
        return "Unknown L4"
    return "Unknown flow"


def _verdict(flow: Flow) -> str:
    return flow.get("verdict", "VERDICT_UNKNOWN")


class Series:
    """A labelled Prometheus metric whose number of label sets is capped (see module docstring)."""

    def __init__(
        self,
        metric: Any,
        labels: list[str],
        bounded: Iterable[str],
        max_series: int,
        overflow: Callable[[int], None],
    ) -> None:
        self.metric = metric
        self.max_series = max_series
        self._keep = [name in set(bounded) for name in labels]
        self._children: dict[tuple, Any] = {}
        self._overflow = overflow

    def child(self, key: tuple, n: int = 1) -> Any:
        child = self._children.get(key)
        if child is not None:
            return child
        if len(self._children) < self.max_series:
            child = self.metric.labels(*key)
            self._children[key] = child
            return child
        self._overflow(n)
        folded = tuple(v if keep else OVERFLOW for v, keep in zip(key, self._keep, strict=True))
        child = self.metric.labels(*folded)  # not cached: only the first max_series keys are
        return child

    def add(self, counts: Counter) -> None:
        for key, n in counts.items():
            self.child(key, n).inc(n)

    def __len__(self) -> int:
        return len(self._children)


class Handler:
    """One metric family (``--metrics`` NAME) over batches of flows."""

    name = ""

    def __init__(self, spec: MetricSpec, registry: CollectorRegistry, ctx: Any) -> None:
        self.spec = spec
        self.registry = registry
        self._ctx = ctx
        self.needs = type(self).needs | context_needs(spec)

    def _counter(
        self,
        name: str,
        doc: str,
        labels: list[str],
        bounded: Iterable[str],
    ) -> Series:
        metric = PromCounter(name, doc, labels, namespace="hubble", registry=self.registry)
        return Series(metric, labels, bounded, self._ctx.max_series, self._ctx.overflow_of(self.spec.name))

    # signature columns (registry.COLUMNS) this handler's labels depend on, for non-L7 flows
    needs: frozenset[str] = frozenset()

    def count(self, f: Flow, n: int, acc: dict[Series, Counter]) -> None:
        """Add ``n`` flows like ``f`` to ``acc[series][label values]``."""
        raise NotImplementedError


class FlowHandler(Handler):
    """``hubble_flows_processed_total{protocol,type,subtype,verdict}``."""

    def __init__(self, spec: MetricSpec, registry: CollectorRegistry, ctx: Any) -> None:
        super().__init__(spec, registry, ctx)
        names, self.context = compile_context(spec)
        labels = ["protocol", "type", "subtype", "verdict", *names]
        self.series = self._counter(
            "flows_processed_total", "Total number of flows processed", labels, labels[:4]
        )

    def _type(self, flow: Flow) -> tuple[str, str]:
        et = flow.get("event_type") or _EMPTY
        t, sub = et.get("type", 0), et.get("sub_type", 0)
        if t == MSG_ACCESS_LOG:
            l7 = flow.get("l7") or _EMPTY
            return "L7", "DNS" if "dns" in l7 else "HTTP" if "http" in l7 else ""
        if t == MSG_DROP:
            return "Drop", ""
        if t == MSG_CAPTURE:
            return "Capture", ""
        if t == MSG_TRACE:
            return "Trace", TRACE_POINTS.get(sub, "")
        if t == MSG_POLICY_VERDICT:
            return "PolicyVerdict", ""
        return "Unknown", str(t)

    needs = frozenset({"event_type", "verdict", "l4_proto"})

    def count(self, f: Flow, n: int, acc: dict[Series, Counter]) -> None:
        acc[self.series][(flow_protocol(f), *self._type(f), _verdict(f), *self.context(f))] += n


class DropHandler(Handler):
    """``hubble_drop_total{reason,protocol}`` (context labels first, as upstream)."""

    def __init__(self, spec: MetricSpec, registry: CollectorRegistry, ctx: Any) -> None:
        super().__init__(spec, registry, ctx)
        names, self.context = compile_context(spec)
        labels = [*names, "reason", "protocol"]
        self.series = self._counter("drop_total", "Number of drops", labels, ["reason", "protocol"])

    needs = frozenset({"event_type", "verdict", "drop_reason", "l4_proto"})

    def count(self, f: Flow, n: int, acc: dict[Series, Counter]) -> None:
        if f.get("verdict") == "DROPPED":
            reason = f.get("drop_reason_desc", "DROP_REASON_UNKNOWN")
            acc[self.series][(*self.context(f), reason, flow_protocol(f))] += n


class PolicyHandler(Handler):
    """``hubble_policy_verdicts_total{direction,match,action}``: policy-verdict and L7 flows."""

    def __init__(self, spec: MetricSpec, registry: CollectorRegistry, ctx: Any) -> None:
        super().__init__(spec, registry, ctx)
        names, self.context = compile_context(spec)
        labels = ["direction", "match", "action", *names]
        self.series = self._counter(
            "policy_verdicts_total", "Total number of Cilium network policy verdicts", labels, labels[:3]
        )

    def _key(self, f: Flow) -> tuple | None:
        t = (f.get("event_type") or _EMPTY).get("type", 0)
        if t == MSG_POLICY_VERDICT:
            if (f.get("source") or _EMPTY).get("identity", 0) == IDENTITY_HOST:
                return None
            match = POLICY_MATCH.get(f.get("policy_match_type", 0), "unknown")
        elif t == MSG_ACCESS_LOG:
            l7 = f.get("l7") or _EMPTY
            sub = "dns" if "dns" in l7 else "http" if "http" in l7 else "kafka" if "kafka" in l7 else ""
            match = f"l7/{sub}"
        else:
            return None
        direction = f.get("traffic_direction", "TRAFFIC_DIRECTION_UNKNOWN").lower()
        return (direction, match, _verdict(f).lower(), *self.context(f))

    needs = frozenset({"event_type", "verdict", "source", "direction", "match"})

    def count(self, f: Flow, n: int, acc: dict[Series, Counter]) -> None:
        key = self._key(f)
        if key is not None:
            acc[self.series][key] += n


def _forwarded_l4(f: Flow) -> dict[str, Any] | None:
    if f.get("verdict") not in ("FORWARDED", "REDIRECTED"):
        return None
    return f.get("l4")


class TcpHandler(Handler):
    """``hubble_tcp_flags_total{flag,family}``: FIN, SYN, SYN-ACK and RST of forwarded TCP flows."""

    def __init__(self, spec: MetricSpec, registry: CollectorRegistry, ctx: Any) -> None:
        super().__init__(spec, registry, ctx)
        names, self.context = compile_context(spec)
        labels = ["flag", "family", *names]
        self.series = self._counter("tcp_flags_total", "TCP flag occurrences", labels, labels[:2])

    needs = frozenset({"verdict", "l4_proto", "tcp_flags", "ip_version"})

    def count(self, f: Flow, n: int, acc: dict[Series, Counter]) -> None:
        l4 = _forwarded_l4(f)
        if not l4 or "TCP" not in l4 or "IP" not in f:
            return
        flags = l4["TCP"].get("flags")
        if not flags:
            return
        counts = acc[self.series]
        rest = (f["IP"].get("ipVersion", "IP_NOT_USED_IN_EXPERIMENTAL"), *self.context(f))
        if flags.get("FIN"):
            counts[("FIN", *rest)] += n
        if flags.get("SYN"):
            counts[("SYN-ACK" if flags.get("ACK") else "SYN", *rest)] += n
        if flags.get("RST"):
            counts[("RST", *rest)] += n


class PortDistributionHandler(Handler):
    """``hubble_port_distribution_total{protocol,port}``: destination ports of forwarded requests."""

    def __init__(self, spec: MetricSpec, registry: CollectorRegistry, ctx: Any) -> None:
        super().__init__(spec, registry, ctx)
        names, self.context = compile_context(spec)
        labels = ["protocol", "port", *names]
        self.series = self._counter(
            "port_distribution_total",
            "Numbers of packets distributed by destination port",
            labels,
            ["protocol"],
        )

    needs = frozenset({"verdict", "l4_proto", "is_reply", "dport"})

    def count(self, f: Flow, n: int, acc: dict[Series, Counter]) -> None:
        l4 = _forwarded_l4(f)
        if not l4 or f.get("is_reply") is not False:  # unknown or reply: skip, as upstream
            return
        counts = acc[self.series]
        for proto in ("TCP", "UDP", "SCTP"):
            if proto in l4:
                counts[(proto, str(l4[proto].get("destination_port", 0)), *self.context(f))] += n
        for proto in ("ICMPv4", "ICMPv6"):
            if proto in l4:
                counts[(proto, "0", *self.context(f))] += n


class IcmpHandler(Handler):
    """``hubble_icmp_total{family,type}`` (upstream labels ICMPv6 messages family="IPv4" too)."""

    def __init__(self, spec: MetricSpec, registry: CollectorRegistry, ctx: Any) -> None:
        super().__init__(spec, registry, ctx)
        names, self.context = compile_context(spec)
        labels = ["family", "type", *names]
        self.series = self._counter("icmp_total", "Number of ICMP messages", labels, ["family"])

    needs = frozenset({"l4_proto", "icmp"})

    def count(self, f: Flow, n: int, acc: dict[Series, Counter]) -> None:
        l4 = f.get("l4")
        if not l4:
            return
        for proto, v6 in (("ICMPv4", False), ("ICMPv6", True)):
            icmp = l4.get(proto)
            if icmp is not None:
                text = icmp_type_code_string(icmp.get("type", 0), icmp.get("code", 0), v6)
                acc[self.series][("IPv4", text, *self.context(f))] += n


class FlowsToWorldHandler(Handler):
    """``hubble_flows_to_world_total{protocol,verdict[,port]}``: non-reply flows to reserved:world."""

    def __init__(self, spec: MetricSpec, registry: CollectorRegistry, ctx: Any) -> None:
        super().__init__(spec, registry, ctx)
        self.any_drop = spec.flag("any-drop")
        self.port = spec.flag("port")
        self.syn_only = spec.flag("syn-only")
        names, self.context = compile_context(spec)
        labels = ["protocol", "verdict", *(["port"] if self.port else []), *names]
        self.series = self._counter(
            "flows_to_world_total", "Total number of flows to reserved:world", labels, labels[:2]
        )

    def _key(self, f: Flow) -> tuple | None:
        l4 = f.get("l4")
        dst = f.get("destination")
        if not l4 or not dst or "event_type" not in f or "reserved:world" not in dst.get("labels", ()):
            return None
        verdict = _verdict(f)
        dropped = verdict == "DROPPED"
        if dropped and not self.any_drop and f.get("drop_reason_desc") != "POLICY_DENIED":
            return None
        is_reply = f.get("is_reply") is True
        if not dropped and is_reply:
            return None
        if self.syn_only and (is_reply or not ((l4.get("TCP") or _EMPTY).get("flags") or _EMPTY).get("SYN")):
            return None
        key: tuple = (flow_protocol(f), verdict)
        if self.port:
            port = ""
            for proto in ("TCP", "UDP", "SCTP"):
                if proto in l4:
                    port = str(l4[proto].get("destination_port", 0))
                    break
            key += (port,)
        return key + self.context(f)

    needs = frozenset(
        {"destination", "event_type", "verdict", "drop_reason", "is_reply", "l4_proto", "tcp_flags", "dport"}
    )

    def count(self, f: Flow, n: int, acc: dict[Series, Counter]) -> None:
        key = self._key(f)
        if key is not None:
            acc[self.series][key] += n


class DnsHandler(Handler):
    """``hubble_dns_queries_total``, ``hubble_dns_responses_total`` and ``hubble_dns_response_types_total``."""

    def __init__(self, spec: MetricSpec, registry: CollectorRegistry, ctx: Any) -> None:
        super().__init__(spec, registry, ctx)
        self.query = spec.flag("query")
        self.ignore_aaaa = spec.flag("ignoreAAAA")
        names, self.context = compile_context(spec)
        extra = ["query"] if self.query else []
        qr = [*names, "rcode", "qtypes", "ips_returned", *extra]
        types = [*names, "type", "qtypes", *extra]
        self.queries = self._counter("dns_queries_total", "Number of DNS queries observed", qr, ["rcode"])
        self.responses = self._counter(
            "dns_responses_total", "Number of DNS responses observed", qr, ["rcode"]
        )
        self.types = self._counter("dns_response_types_total", "Number of DNS response types", types, [])

    def count(self, f: Flow, n: int, acc: dict[Series, Counter]) -> None:
        dns = (f.get("l7") or _EMPTY).get("dns")
        if dns is None:
            return
        qtypes_list = dns.get("qtypes", [])
        if self.ignore_aaaa and qtypes_list == ["AAAA"]:
            return
        ctx = self.context(f)
        qtypes = ",".join(qtypes_list)
        ips = str(len(dns.get("ips", ())))
        extra = (dns.get("query", ""),) if self.query else ()
        if f.get("verdict") == "DROPPED":
            acc[self.queries][(*ctx, "Policy denied", qtypes, ips, *extra)] += n
        elif f.get("is_reply") is not True:
            acc[self.queries][(*ctx, "", qtypes, ips, *extra)] += n
        else:
            rcode = DNS_RCODES.get(dns.get("rcode", 0), "")
            acc[self.responses][(*ctx, rcode, qtypes, ips, *extra)] += n
            for rrtype in dns.get("rrtypes", ()):
                acc[self.types][(*ctx, rrtype, qtypes, *extra)] += n


class HttpHandler(Handler):
    """``http`` (v1) and ``httpV2``: requests (and v1 responses) counters, a duration histogram."""

    def __init__(self, spec: MetricSpec, registry: CollectorRegistry, ctx: Any) -> None:
        super().__init__(spec, registry, ctx)
        self.v2 = spec.name == "httpV2"
        self.exemplars = spec.options.get("exemplars") == "true"
        self._memo: dict[Any, tuple[str | None, tuple, tuple]] = {}  # see count_correlated
        names, self.context = compile_context(spec, invert=self.v2)
        bounded = ["reporter"]
        if self.v2:
            self.requests = self._counter(
                "http_requests_total",
                "Count of HTTP requests",
                [*names, "method", "protocol", "status", "reporter"],
                bounded,
            )
            self.responses = None
        else:
            self.requests = self._counter(
                "http_requests_total",
                "Count of HTTP requests",
                [*names, "method", "protocol", "reporter"],
                bounded,
            )
            self.responses = self._counter(
                "http_responses_total",
                "Count of HTTP responses",
                [*names, "method", "protocol", "status", "reporter"],
                bounded,
            )
        labels = [*names, "method", "reporter"]
        metric = PromHistogram(
            "http_request_duration_seconds",
            "Quantiles of HTTP request duration in seconds",
            labels,
            namespace="hubble",
            registry=registry,
        )
        self.duration = Series(metric, labels, bounded, ctx.max_series, ctx.overflow_of(spec.name))

    @staticmethod
    def _reporter(f: Flow) -> str:
        return {"EGRESS": "client", "INGRESS": "server"}.get(f.get("traffic_direction", ""), "unknown")

    def count(self, f: Flow, n: int, acc: dict[Series, Counter]) -> None:
        l7 = f.get("l7")
        if not l7 or "http" not in l7:
            return
        kind = l7.get("type")
        if kind == "RESPONSE" or (not self.v2 and kind == "REQUEST"):
            for _ in range(n):  # L7 flows come one by one (n == 1): latencies differ per flow
                self._one(f, l7, kind)

    def count_correlated(self, f: Flow, correlations: list[tuple[int, str]], key: Any = None) -> None:
        """``count`` of flows that are ``f`` but for their latency and trace ID (``correlations``:
        one ``(latency ns, trace ID)`` per flow; ``f`` itself has neither). ``key``, when given,
        stands for ``f``: the label values are worked out once per key."""
        labels = self._memo.get(key) if key is not None else None
        if labels is None:
            labels = self._labels(f)
            if key is not None:
                if len(self._memo) >= 8192:
                    self._memo.clear()
                self._memo[key] = labels
        if not self.exemplars:
            self._count_labelled(labels, correlations)
            return
        kind, count_key, duration_key = labels
        if kind is None:
            return
        n = len(correlations)
        if kind == "REQUEST":
            child = self.requests.child(count_key, n)
            for _, trace in correlations:
                child.inc(1, {"traceID": trace} if trace else None)
            return
        counter = self.responses if self.responses is not None else self.requests
        child = counter.child(count_key, n)
        duration = self.duration.child(duration_key, n)
        for latency, trace in correlations:
            exemplar = {"traceID": trace} if trace else None
            child.inc(1, exemplar)
            duration.observe(latency / 1e9, exemplar)

    def _count_labelled(
        self, labels: tuple[str | None, tuple, tuple], correlations: list[tuple[int, str]]
    ) -> None:
        kind, count_key, duration_key = labels
        if kind is None:
            return
        n = len(correlations)
        if kind == "REQUEST":
            self.requests.child(count_key, n).inc(n)
            return
        counter = self.responses if self.responses is not None else self.requests
        counter.child(count_key, n).inc(n)
        observe_many(self.duration.child(duration_key, n), [latency / 1e9 for latency, _ in correlations])

    def labels_of(self, f: Flow) -> tuple[str | None, tuple, tuple]:
        """The label values this family counts ``f`` (without latency and trace ID) under."""
        return self._labels(f)

    def _labels(self, f: Flow) -> tuple[str | None, tuple, tuple]:
        """(the kind counted or None, the counter's label values, the histogram's) of ``f``."""
        l7 = f.get("l7")
        if not l7 or "http" not in l7:
            return None, (), ()
        kind = l7.get("type")
        if not (kind == "RESPONSE" or (not self.v2 and kind == "REQUEST")):
            return None, (), ()
        http = l7["http"]
        ctx = self.context(f)
        method, proto, reporter = http.get("method", ""), http.get("protocol", ""), self._reporter(f)
        if kind == "REQUEST":
            return kind, (*ctx, method, proto, reporter), ()
        status = str(http.get("code", 0))
        return kind, (*ctx, method, proto, status, reporter), (*ctx, method, reporter)

    def _one(self, f: Flow, l7: dict[str, Any], kind: str) -> None:
        http = l7["http"]
        ctx = self.context(f)
        method, proto, reporter = http.get("method", ""), http.get("protocol", ""), self._reporter(f)
        trace = ((f.get("trace_context") or _EMPTY).get("parent") or _EMPTY).get("trace_id", "")
        exemplar = {"traceID": trace} if self.exemplars and trace else None
        if kind == "REQUEST":
            self.requests.child((*ctx, method, proto, reporter)).inc(1, exemplar)
            return
        status = str(http.get("code", 0))
        counter = self.responses if self.responses is not None else self.requests
        counter.child((*ctx, method, proto, status, reporter)).inc(1, exemplar)
        seconds = int(l7.get("latency_ns", 0)) / 1e9
        self.duration.child((*ctx, method, reporter)).observe(seconds, exemplar)


def observe_many(histogram: Any, amounts: list[float]) -> None:
    """``histogram.observe(a)`` for each amount, with the same result (the sum is added in the same
    order), but one bucket increment per bucket instead of one call per amount. Falls back to
    ``observe`` when the client library's histogram is not laid out as expected. Amounts are
    finite (latencies)."""
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if (
        bounds is None
        or buckets is None
        or total is None
        or len(buckets) != len(bounds)
        or not hasattr(total, "get")
        or len(amounts) < 4
    ):
        for amount in amounts:
            histogram.observe(amount)
        return
    histogram._raise_if_not_observable()
    hits = Counter(bisect_left(bounds, amount) for amount in amounts)  # the first bound >= amount
    running = total.get()
    for amount in amounts:
        running += amount
    total.set(running)
    for index, n in hits.items():
        buckets[index].inc(n)  # the last bound is +Inf: every finite amount has a bucket


HANDLERS: dict[str, type[Handler]] = {
    "dns": DnsHandler,
    "drop": DropHandler,
    "flow": FlowHandler,
    "flows-to-world": FlowsToWorldHandler,
    "http": HttpHandler,
    "httpV2": HttpHandler,
    "icmp": IcmpHandler,
    "policy": PolicyHandler,
    "port-distribution": PortDistributionHandler,
    "tcp": TcpHandler,
}
