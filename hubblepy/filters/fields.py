"""One compiler per FlowFilter field: filter values in, a check over a canonical flow dict out.

Each ``build_*`` function validates its values (raising :class:`FilterError` with upstream's
text) and returns a closure that reads only the flow keys it needs. Canonical flow dicts omit
defaults, so a missing key means zero, false, empty or "not set" as the proto would say; a
missing *message* (e.g. no ``l4``) is "absent", which most checks treat as no match.

Semantics follow Hubble's filters; see the package docstring.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from hubblepy.filters import enums
from hubblepy.filters.errors import FilterError
from hubblepy.filters.goaddr import AddrSyntaxError, parse_addr, parse_prefix
from hubblepy.filters.goregex import GoRegexError, compile_go_regex
from hubblepy.filters.gourl import request_uri_path
from hubblepy.filters.labelselector import (
    LabelArray,
    SelectorError,
    compile_selector,
    parse_cilium_labels,
    parse_selector,
)
from hubblepy.filters.patterns import compile_fqdn_patterns, compile_node_name_patterns
from hubblepy.gotext import go_parse_uint, go_quote

Flow = dict[str, Any]
Check = Callable[[Flow], bool]

_EMPTY: dict[str, Any] = {}
_L7_EVENT_TYPE = 129
_DROPPED = frozenset(("DROPPED", 2))

# --- small helpers -----------------------------------------------------------------------------


def _bounded_cache_get(cache: dict[Any, Any], key: Any, make: Callable[[], Any], limit: int = 4096) -> Any:
    value = cache.get(key, cache)
    if value is cache:
        if len(cache) >= limit:
            cache.clear()
        value = make()
        cache[key] = value
    return value


def _enum_set(table: dict[str, int], values: Iterable[Any], what: str) -> frozenset[Any]:
    forms: set[Any] = set()
    for value in values:
        try:
            forms.update(enums.both_forms(table, value, what))
        except ValueError as err:
            raise FilterError(str(err)) from None
    return frozenset(forms)


def _to_int(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise FilterError(f"invalid {what} value: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise FilterError(f"invalid {what} value: {value!r}")


def _get(obj: dict[str, Any], proto_name: str, json_name: str, default: Any) -> Any:
    """Read a nested filter message field given in proto or lowerCamel spelling."""
    if proto_name in obj:
        return obj[proto_name]
    return obj.get(json_name, default)


# --- simple equality fields ----------------------------------------------------------------------


def build_uuid(values: list[Any]) -> Check:
    wanted = frozenset(values)
    return lambda flow: flow.get("uuid", "") in wanted


def build_verdict(values: list[Any]) -> Check:
    wanted = _enum_set(enums.VERDICT, values, "verdict")
    return lambda flow: flow.get("verdict", "VERDICT_UNKNOWN") in wanted


def build_drop_reason_desc(values: list[Any]) -> Check:
    wanted = _enum_set(enums.DROP_REASON, values, "drop_reason_desc")
    return lambda flow: (
        flow.get("verdict") in _DROPPED and flow.get("drop_reason_desc", "DROP_REASON_UNKNOWN") in wanted
    )


def build_traffic_direction(values: list[Any]) -> Check:
    wanted = _enum_set(enums.TRAFFIC_DIRECTION, values, "traffic_direction")
    return lambda flow: flow.get("traffic_direction", "TRAFFIC_DIRECTION_UNKNOWN") in wanted


def build_ip_version(values: list[Any]) -> Check:
    wanted = _enum_set(enums.IP_VERSION, values, "ip_version")
    return lambda flow: (flow.get("IP") or _EMPTY).get("ipVersion", "IP_NOT_USED") in wanted


def build_reply(values: list[Any]) -> Check:
    wanted = frozenset(bool(v) for v in values)

    def check(flow: Flow) -> bool:
        is_reply = flow.get("is_reply")
        if is_reply is None:
            # Hubble treats an unknown is_reply of a DROPPED flow as false.
            if flow.get("verdict") not in _DROPPED:
                return False
            is_reply = False
        return is_reply in wanted

    return check


def build_encrypted(values: list[Any]) -> Check:
    wanted = frozenset(bool(v) for v in values)
    return lambda flow: bool((flow.get("IP") or _EMPTY).get("encrypted", False)) in wanted


def build_trace_id(values: list[Any]) -> Check:
    wanted = frozenset(values)

    def check(flow: Flow) -> bool:
        parent = (flow.get("trace_context") or _EMPTY).get("parent") or _EMPTY
        return parent.get("trace_id", "") in wanted

    return check


def build_ip_trace_id(values: list[Any]) -> Check:
    numbers = {_to_int(v, "ip_trace_id") for v in values}
    wanted = frozenset(numbers | {str(n) for n in numbers})

    def check(flow: Flow) -> bool:
        trace = flow.get("ip_trace_id")
        if trace is None:
            return False
        return trace.get("trace_id", "0") in wanted

    return check


def build_identity(values: list[Any], side: str) -> Check:
    wanted = frozenset(_to_int(v, f"{side}_identity") for v in values)

    def check(flow: Flow) -> bool:
        endpoint = flow.get(side)
        return endpoint is not None and endpoint.get("identity", 0) in wanted

    return check


def build_cluster_name(values: list[Any], side: str) -> Check:
    if "" in values:
        raise FilterError("invalid filter, name must not be empty")
    wanted = frozenset(values)
    return lambda flow: (flow.get(side) or _EMPTY).get("cluster_name", "") in wanted


def build_interface(values: list[Any]) -> Check:
    wanted = [(int(_get(v, "index", "index", 0)), _get(v, "name", "name", "")) for v in values]

    def check(flow: Flow) -> bool:
        iface = flow.get("interface")
        if iface is None:
            return False
        index = iface.get("index", 0)
        name = iface.get("name", "")
        return any((not i or i == index) and (not n or n == name) for i, n in wanted)

    return check


def build_workload(values: list[Any], side: str) -> Check:
    wanted = [(_get(v, "name", "name", ""), _get(v, "kind", "kind", "")) for v in values]

    def check(flow: Flow) -> bool:
        for workload in (flow.get(side) or _EMPTY).get("workloads", ()):
            name = workload.get("name", "")
            kind = workload.get("kind", "")
            for want_name, want_kind in wanted:
                if (not want_name or want_name == name) and (not want_kind or want_kind == kind):
                    return True
        return False

    return check


# --- event types ---------------------------------------------------------------------------------


def build_event_type(values: list[Any]) -> Check:
    wanted: list[tuple[int, bool, int]] = []
    for v in values:
        wanted.append(
            (
                int(_get(v, "type", "type", 0)),
                bool(_get(v, "match_sub_type", "matchSubType", False)),
                int(_get(v, "sub_type", "subType", 0)),
            )
        )
    if any(t == 0 and not match_sub for t, match_sub, _ in wanted):
        return lambda flow: flow.get("event_type") is not None

    def check(flow: Flow) -> bool:
        event = flow.get("event_type")
        if event is None:
            return False
        etype = event.get("type", 0)
        subtype = event.get("sub_type", 0)
        for t, match_sub, sub in wanted:
            if t and t != etype:
                continue
            if match_sub and sub != subtype:
                continue
            return True
        return False

    return check


def http_compatible(event_types: list[Any]) -> bool:
    """HTTP filters need no event-type filter, or one that includes type 129 (l7)."""
    return not event_types or any(int(_get(v, "type", "type", 0)) == _L7_EVENT_TYPE for v in event_types)


# --- L4 / L7 -----------------------------------------------------------------------------------

_L4_PROTOCOLS = {
    "tcp": ("TCP",),
    "udp": ("UDP",),
    "sctp": ("SCTP",),
    "icmp": ("ICMPv4", "ICMPv6"),
    "icmpv4": ("ICMPv4",),
    "icmpv6": ("ICMPv6",),
    "vrrp": ("VRRP",),
    "igmp": ("IGMP",),
}
_L7_PROTOCOLS = {"dns": "dns", "http": "http", "kafka": "kafka"}


def build_protocol(values: list[Any]) -> Check:
    l4_keys: list[str] = []
    l7_keys: list[str] = []
    for value in values:
        proto = str(value).lower()
        if proto in _L4_PROTOCOLS:
            l4_keys.extend(_L4_PROTOCOLS[proto])
        elif proto in _L7_PROTOCOLS:
            l7_keys.append(_L7_PROTOCOLS[proto])
        else:
            raise FilterError(f"invalid protocol filter: unknown protocol: {go_quote(str(value))}")
    l4_tuple = tuple(dict.fromkeys(l4_keys))
    l7_tuple = tuple(dict.fromkeys(l7_keys))

    def check(flow: Flow) -> bool:
        if l4_tuple:
            l4 = flow.get("l4")
            if l4:
                for key in l4_tuple:
                    if key in l4:
                        return True
        if l7_tuple:
            l7 = flow.get("l7")
            if l7:
                for key in l7_tuple:
                    if key in l7:
                        return True
        return False

    return check


def build_port(values: list[Any], side: str) -> Check:
    ports: set[int] = set()
    for value in values:
        text = str(value)
        try:
            ports.add(go_parse_uint(text, 10, 16))
        except ValueError as err:
            raise FilterError(f"invalid {side} port filter: invalid port {go_quote(text)}: {err}") from None
    wanted = frozenset(ports)
    key = f"{side}_port"

    def check(flow: Flow) -> bool:
        l4 = flow.get("l4")
        if not l4:
            return False
        block = l4.get("TCP")
        if block is None:
            block = l4.get("UDP")
            if block is None:
                block = l4.get("SCTP")
                if block is None:
                    return False
        return block.get(key, 0) in wanted

    return check


def build_tcp_flags(values: list[Any]) -> Check:
    names = ("FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR", "NS")
    wanted = [tuple(n for n in names if v.get(n)) for v in values]

    def check(flow: Flow) -> bool:
        tcp = (flow.get("l4") or _EMPTY).get("TCP")
        if tcp is None:
            return False
        flags = tcp.get("flags")
        if flags is None:
            return False
        for required in wanted:
            for name in required:
                if not flags.get(name):
                    break
            else:
                return True
        return False

    return check


def _http(flow: Flow) -> dict[str, Any] | None:
    l7 = flow.get("l7")
    return None if l7 is None else l7.get("http")


_STATUS_FULL = re.compile(r"[1-5][0-9]{2}\Z")
_STATUS_PREFIX = re.compile(r"[1-5][0-9]?\+\Z")


def build_http_status(values: list[Any]) -> Check:
    full: set[str] = set()
    prefixes: list[str] = []
    for value in values:
        text = str(value)
        if _STATUS_FULL.match(text):
            full.add(text)
        elif _STATUS_PREFIX.match(text):
            prefixes.append(text[:-1])
        else:
            raise FilterError(
                f"invalid http status code filter: invalid status code prefix: {go_quote(text)}"
            )
    prefix_tuple = tuple(prefixes)

    def check(flow: Flow) -> bool:
        http = _http(flow)
        if http is None:
            return False
        code = http.get("code", 0)
        if not code:
            return False
        text = f"{code:03d}"
        return text in full or text.startswith(prefix_tuple)

    return check


def build_http_method(values: list[Any]) -> Check:
    wanted = frozenset(str(v).lower() for v in values)

    def check(flow: Flow) -> bool:
        http = _http(flow)
        if http is None:
            return False
        method = http.get("method", "")
        return bool(method) and method.lower() in wanted

    return check


def _compile_regexes(values: list[Any], context: str) -> list[re.Pattern[str]]:
    compiled = []
    for value in values:
        text = str(value)
        try:
            compiled.append(compile_go_regex(text))
        except GoRegexError as err:
            raise FilterError(context.format(pattern=text, err=err)) from None
    return compiled


def build_http_path(values: list[Any]) -> Check:
    regexes = _compile_regexes(values, "invalid http path filter: {pattern}: {err}")
    paths: dict[str, str | None] = {}

    def check(flow: Flow) -> bool:
        http = _http(flow)
        if http is None:
            return False
        url = http.get("url", "")
        if not url:
            return False
        path = _bounded_cache_get(paths, url, lambda: request_uri_path(url))
        if path is None:
            return False
        return any(rx.search(path) for rx in regexes)

    return check


def build_http_url(values: list[Any]) -> Check:
    regexes = _compile_regexes(values, "invalid http url filter: {pattern}: {err}")

    def check(flow: Flow) -> bool:
        http = _http(flow)
        if http is None:
            return False
        url = http.get("url", "")
        return bool(url) and any(rx.search(url) for rx in regexes)

    return check


def build_http_header(values: list[Any]) -> Check:
    wanted = frozenset((_get(v, "key", "key", ""), _get(v, "value", "value", "")) for v in values)

    def check(flow: Flow) -> bool:
        http = _http(flow)
        if http is None:
            return False
        for header in http.get("headers", ()):
            if (header.get("key", ""), header.get("value", "")) in wanted:
                return True
        return False

    return check


def build_dns_query(values: list[Any]) -> Check:
    regexes = _compile_regexes(values, "invalid DNS query filter: failed to compile regexp: {err}")

    def check(flow: Flow) -> bool:
        l7 = flow.get("l7")
        if l7 is None:
            return False
        dns = l7.get("dns")
        if dns is None:
            return False
        query = dns.get("query", "")
        return any(rx.search(query) for rx in regexes)

    return check


# --- addresses -----------------------------------------------------------------------------------

# Flow address text -> (bit length, value) for addresses a prefix can contain (no zone), else None.
_ADDR_CACHE: dict[str, tuple[int, int] | None] = {}


def _parsed_addr(text: str) -> tuple[int, int] | None:
    def parse() -> tuple[int, int] | None:
        try:
            addr = parse_addr(text)
        except AddrSyntaxError:
            return None
        return None if addr.zone else (addr.bits, addr.value)

    return _bounded_cache_get(_ADDR_CACHE, text, parse, limit=65536)


def build_ip(values: list[Any], key: str) -> Check:
    addresses: set[str] = set()
    # (bit length, host bits, network >> host bits): Go's Prefix.Contains without a zone
    prefixes: list[tuple[int, int, int]] = []
    for value in values:
        text = str(value)
        try:
            if "/" in text:
                prefix = parse_prefix(text)
                host_bits = prefix.bits - prefix.length
                prefixes.append((prefix.bits, host_bits, prefix.network >> host_bits))
            else:
                parse_addr(text)
                addresses.add(text)
        except AddrSyntaxError as err:
            kind = "prefix" if "/" in text else "address"
            raise FilterError(f"invalid IP {kind} {go_quote(text)} in filter: {err}") from None
    wanted = frozenset(addresses)
    prefix_list = tuple(prefixes)

    def check(flow: Flow) -> bool:
        ip = flow.get("IP")
        if ip is None:
            return False
        text = ip.get(key, "")
        if not text:
            return False
        if text in wanted:
            return True
        if prefix_list:
            addr = _parsed_addr(text)
            if addr is not None:
                bits, number = addr
                for prefix_bits, host_bits, network in prefix_list:
                    if bits == prefix_bits and number >> host_bits == network:
                        return True
        return False

    return check


# --- names: pods, services, fqdn, node names -----------------------------------------------------


def _parse_namespaced(value: str) -> tuple[str | None, str]:
    """``[ns/]prefix`` -> (namespace or None for any namespace, name prefix)."""
    if value == "":
        raise FilterError("invalid filter, name must not be empty")
    parts = value.split("/")
    if len(parts) == 1:
        return "default", parts[0]
    namespace = parts[0]
    return (namespace or None), parts[1]


def _build_namespaced(values: list[Any], message_key: str, name_key: str) -> Check:
    """Match ``flow[message_key]``'s namespace and ``name_key`` against ``[ns/]prefix`` values."""
    wanted = [_parse_namespaced(str(v)) for v in values]
    namespaces_only = frozenset(ns for ns, prefix in wanted if ns is not None and prefix == "")
    if len(namespaces_only) == len(wanted):
        # The common --namespace case: only whole namespaces (never empty, so presence is implied).

        def namespace_check(flow: Flow) -> bool:
            message = flow.get(message_key)
            return message is not None and message.get("namespace") in namespaces_only

        return namespace_check

    def check(flow: Flow) -> bool:
        message = flow.get(message_key)
        if message is None:
            return False
        namespace = message.get("namespace", "")
        name = message.get(name_key, "")
        if not namespace and not name:
            return False
        for want_ns, prefix in wanted:
            if (want_ns is None or want_ns == namespace) and name.startswith(prefix):
                return True
        return False

    return check


def build_pod(values: list[Any], side: str) -> Check:
    return _build_namespaced(values, side, "pod_name")


def build_service(values: list[Any], side: str) -> Check:
    try:
        return _build_namespaced(values, f"{side}_service", "name")
    except FilterError as err:
        raise FilterError(f"invalid {side} service filter: {err}") from None


def build_fqdn(values: list[Any], key: str) -> Check:
    regex = compile_fqdn_patterns([str(v) for v in values])
    match = regex.match

    def check(flow: Flow) -> bool:
        names = flow.get(key)
        if not names:
            return False
        return any(match(name) for name in names)

    return check


def build_node_name(values: list[Any]) -> Check:
    match = compile_node_name_patterns([str(v) for v in values]).match

    def check(flow: Flow) -> bool:
        name = flow.get("node_name", "")
        if not name:
            return False
        if "/" not in name:
            name = "default/" + name
        return match(name) is not None

    return check


# --- labels --------------------------------------------------------------------------------------

_LABEL_CACHE: dict[tuple[str, ...], LabelArray] = {}
_NO_LABELS: LabelArray = []


def _label_array(labels: list[str] | None) -> LabelArray:
    if not labels:
        return _NO_LABELS
    key = tuple(labels)
    return _bounded_cache_get(_LABEL_CACHE, key, lambda: parse_cilium_labels(labels))


def build_labels(values: list[Any], getter: Callable[[Flow], list[str] | None], what: str) -> Check:
    selectors = []
    for value in values:
        try:
            selectors.append(compile_selector(parse_selector(str(value))))
        except SelectorError as err:
            raise FilterError(f"invalid {what} label filter: {err}") from None

    def check(flow: Flow) -> bool:
        labels = _label_array(getter(flow))
        return any(selector(labels) for selector in selectors)

    return check
