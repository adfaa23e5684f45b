"""Turn `hubble observe` filter flags into allow/deny lists of canonical FlowFilter dicts.

This follows upstream's flag semantics (hubble 1.19's `observe` filter flags):

* every filter flag value lands in one of two *trackers*: the allow list, or, right after ``--not``,
  the deny list; each tracker builds a *left* (source-side) and a *right* (destination-side)
  FlowFilter, which are ORed;
* one-sided flags (``--verdict``, ``--from-pod``, ...) go into both filters; either-side flags
  (``--pod``, ``--ip``, ...) put the source form into the left and the destination form into the
  right filter; identical left and right filters collapse into one;
* namespace flags are kept aside and prepended to pod/service values (or become ``ns/`` pod
  filters) when the filters are materialised;
* some flags cannot be combined (conflict groups), checked per tracker when a flag is set.

Values are stored in their canonical protobuf-JSON form (enum names, 64-bit integers as strings),
and :func:`FilterTracker.flow_filters` returns dicts whose keys follow FlowFilter declaration order.
This module only *builds* filters: compiling and validating patterns (IPs, ports, regexes, label
selectors) belongs to :mod:`hubblepy.filters`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from hubblepy.cli.timeparse import go_quote
from hubblepy.codec import schema
from hubblepy.filters import FilterError
from hubblepy.filters import parse_identity as _parse_identity
from hubblepy.gotext import go_parse_uint

#: FlowFilter field names in .proto declaration order (the key order of canonical dicts).
FLOW_FILTER_FIELDS: tuple[str, ...] = tuple(f.name for f in schema.message_info("flow.FlowFilter").fields)

VERDICT_NAMES = frozenset(schema.enum_numbers("flow.Verdict"))
DROP_REASON_NAMES = frozenset(schema.enum_numbers("flow.DropReason"))

#: Monitor message type names accepted by ``--type`` (case-sensitive).
EVENT_TYPE_NAMES: dict[str, int] = {
    "drop": 1,
    "debug": 2,
    "capture": 3,
    "trace": 4,
    "policy-verdict": 5,
    "trace-sock": 7,
    "l7": 129,
    "agent": 130,
}
TRACE_TYPE = 4
AGENT_TYPE = 130

#: Trace observation point names usable as ``trace:<name>``.
TRACE_OBSERVATION_POINTS: dict[str, int] = {
    "to-endpoint": 0,
    "to-proxy": 1,
    "to-host": 2,
    "to-stack": 3,
    "to-overlay": 4,
    "from-endpoint": 5,
    "from-proxy": 6,
    "from-host": 7,
    "from-stack": 8,
    "from-overlay": 9,
    "from-network": 10,
    "to-network": 11,
    "from-crypto": 12,
    "to-crypto": 13,
}

#: Agent event sub-type names usable as ``agent:<name>``.
AGENT_EVENT_SUBTYPES: dict[str, int] = {
    "unspecified": 0,
    "message": 1,
    "agent-started": 2,
    "policy-updated": 3,
    "policy-deleted": 4,
    "endpoint-regenerate-success": 5,
    "endpoint-regenerate-failure": 6,
    "endpoint-created": 7,
    "endpoint-deleted": 8,
    "ipcache-upserted": 9,
    "ipcache-deleted": 10,
}

_TCP_FLAG_NAMES = ("FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR", "NS")

#: Flags that cannot be combined: any two *different* flags of one group conflict. The order
#: decides which pair the error message names, exactly as upstream.
CONFLICT_GROUPS: tuple[tuple[str, ...], ...] = (
    (
        "from-fqdn",
        "from-ip",
        "ip",
        "fqdn",
        "from-namespace",
        "namespace",
        "from-all-namespaces",
        "all-namespaces",
    ),
    ("from-fqdn", "from-ip", "ip", "fqdn", "from-pod", "pod"),
    ("to-fqdn", "to-ip", "ip", "fqdn", "to-namespace", "namespace", "to-all-namespaces", "all-namespaces"),
    ("to-fqdn", "to-ip", "ip", "fqdn", "to-pod", "pod"),
    ("to-pod", "namespace", "all-namespaces"),
    ("from-pod", "namespace", "all-namespaces"),
    ("to-service", "namespace", "all-namespaces"),
    ("from-service", "namespace", "all-namespaces"),
    ("label", "from-label"),
    ("label", "to-label"),
    ("service", "from-service"),
    ("service", "to-service"),
    ("port", "to-port"),
    ("port", "from-port"),
    ("identity", "to-identity"),
    ("identity", "from-identity"),
    ("workload", "to-workload"),
    ("workload", "from-workload"),
    ("encrypted", "unencrypted"),
)

# Flag name -> (source-side field, destination-side field) for either-side flags.
_EITHER_SIDE_STRING_FLAGS = {
    "fqdn": ("source_fqdn", "destination_fqdn"),
    "pod": ("source_pod", "destination_pod"),
    "ip": ("source_ip", "destination_ip"),
    "label": ("source_label", "destination_label"),
    "service": ("source_service", "destination_service"),
    "port": ("source_port", "destination_port"),
    "cluster": ("source_cluster_name", "destination_cluster_name"),
}
# Flag name -> field, for one-sided flags whose value is stored as given.
_PLAIN_STRING_FLAGS = {
    "uuid": "uuid",
    "from-fqdn": "source_fqdn",
    "to-fqdn": "destination_fqdn",
    "from-pod": "source_pod",
    "to-pod": "destination_pod",
    "from-ip": "source_ip",
    "snat-ip": "source_ip_xlated",
    "to-ip": "destination_ip",
    "from-label": "source_label",
    "to-label": "destination_label",
    "from-service": "source_service",
    "to-service": "destination_service",
    "from-port": "source_port",
    "to-port": "destination_port",
    "trace-id": "trace_id",
    "http-status": "http_status_code",
    "http-method": "http_method",
    "http-path": "http_path",
    "http-url": "http_url",
    "protocol": "protocol",
    "node-name": "node_name",
    "node-label": "node_labels",
    "from-cluster": "source_cluster_name",
    "to-cluster": "destination_cluster_name",
}
_NAMESPACE_FLAGS = {
    "namespace": ("ns", None),
    "from-namespace": ("src_ns", None),
    "to-namespace": ("dst_ns", None),
    "all-namespaces": ("ns", ""),
    "from-all-namespaces": ("src_ns", ""),
    "to-all-namespaces": ("dst_ns", ""),
}

#: Every filter flag name (long form) handled by :class:`FilterBuilder`.
FILTER_FLAG_NAMES: frozenset[str] = frozenset(
    {
        "not",
        "verdict",
        "drop-reason-desc",
        "type",
        "ipv4",
        "ipv6",
        "ip-version",
        "http-header",
        "ip-trace-id",
        "workload",
        "from-workload",
        "to-workload",
        "identity",
        "from-identity",
        "to-identity",
        "tcp-flags",
        "traffic-direction",
        "cel-expression",
        "interface",
        "encrypted",
        "unencrypted",
    }
    | set(_EITHER_SIDE_STRING_FLAGS)
    | set(_PLAIN_STRING_FLAGS)
    | set(_NAMESPACE_FLAGS)
)


class FilterFlagError(ValueError):
    """A bad filter flag value; the text is upstream's message without the pflag prefix."""


def _quote_inner(text: str) -> str:
    return go_quote(text)[1:-1]


def _int32(value: int) -> int:
    """Go's ``int32(uint32)`` conversion (wraps around)."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def parse_identity(value: str) -> int:
    """A reserved identity name or a Go integer literal up to 2^32-1 (see :mod:`hubblepy.filters`)."""
    try:
        return _parse_identity(value)
    except FilterError as exc:
        raise FilterFlagError(str(exc)) from None


def parse_event_type(value: str) -> dict:
    """``TYPE[:SUBTYPE]`` into a canonical EventTypeFilter dict."""
    type_text, sep, sub_text = value.partition(":")
    named = EVENT_TYPE_NAMES.get(type_text)
    if named is not None:
        type_number = named
    else:
        named = 0  # upstream only looks up sub-type names for a type given by name
        try:
            type_number = go_parse_uint(type_text, 10, 32)
        except ValueError as exc:
            raise FilterFlagError(
                f"unable to parse type '{type_text}', not a known type name and unable to parse as numeric value: {exc}"
            ) from None
    result: dict = {}
    if _int32(type_number):
        result["type"] = _int32(type_number)
    if sep:
        sub_number = None
        if named == TRACE_TYPE:
            sub_number = TRACE_OBSERVATION_POINTS.get(sub_text)
        elif named == AGENT_TYPE:
            sub_number = AGENT_EVENT_SUBTYPES.get(sub_text)
        if sub_number is None:
            try:
                sub_number = go_parse_uint(sub_text, 10, 32)
            except ValueError as exc:
                raise FilterFlagError(
                    f"unable to parse event sub-type '{sub_text}', not a known sub-type name and unable to parse as numeric value: {exc}"
                ) from None
        result["match_sub_type"] = True
        if _int32(sub_number):
            result["sub_type"] = _int32(sub_number)
    return result


def parse_tcp_flags(value: str) -> dict:
    """``syn,ack`` into a canonical TCPFlags dict (keys in declaration order)."""
    wanted = set()
    for part in value.split(","):
        upper = part.upper()
        if upper not in _TCP_FLAG_NAMES:
            raise FilterFlagError(f"unknown tcp flag: {part}")
        wanted.add(upper)
    return {name: True for name in _TCP_FLAG_NAMES if name in wanted}


def parse_workload(value: str) -> dict:
    """``name``, ``Kind/name`` or ``Kind/`` into a canonical Workload dict."""
    kind, sep, name = value.partition("/")
    if not sep:
        kind, name = "", value
    result = {}
    if name:
        result["name"] = name
    if kind:
        result["kind"] = kind
    return result


def _ip_version(value: str) -> str:
    lowered = value.lower()
    if lowered in ("4", "v4", "ipv4", "ip4"):
        return "IPv4"
    if lowered in ("6", "v6", "ipv6", "ip6"):
        return "IPv6"
    return "IP_NOT_USED"


def _namespace_of(name: str) -> str:
    head, sep, _ = name.partition("/")
    return head if sep else ""


def _namespace_conflicts(namespaces: list[str], names: list[str]) -> str | None:
    for namespace in namespaces:
        for name in names:
            found = _namespace_of(name)
            if found and found != namespace:
                return (
                    f'namespace conflict: "{_quote_inner(namespace)}" does not contain "{_quote_inner(name)}"'
                )
    return None


def _inconsistent_namespaces(pods: list[str], services: list[str]) -> str | None:
    for pod in pods:
        pod_namespace = _namespace_of(pod)
        if not pod_namespace:
            continue
        for service in services:
            if _namespace_of(service) != pod_namespace:
                return f'namespace of service "{_quote_inner(service)}" conflict with pod "{_quote_inner(pod_namespace)}"'
    return None


def _prepend_namespaces(values: list[str], namespaces: list[str]) -> list[str]:
    if not namespaces or not values:
        return values
    result = []
    for value in values:
        if "/" in value:
            result.append(value)
            continue
        result.extend(f"{namespace}/{value}" for namespace in namespaces)
    return result


def _apply_namespaces(flow_filter: dict, namespaces: list[str], side: str) -> None:
    pod_key, service_key = f"{side}_pod", f"{side}_service"
    if not flow_filter.get(pod_key) and not flow_filter.get(service_key):
        flow_filter[pod_key] = [""]
    for key in (pod_key, service_key):
        values = _prepend_namespaces(flow_filter.get(key, []), namespaces)
        if values:
            flow_filter[key] = values


def canonical_flow_filter(fields: dict) -> dict:
    """Order a FlowFilter dict by declaration order, dropping empty fields."""
    return {name: fields[name] for name in FLOW_FILTER_FIELDS if fields.get(name)}


@dataclass
class FilterTracker:
    """The filters built for one list (allow or deny): a left/right pair plus namespaces."""

    left: dict | None = None
    right: dict | None = None
    ns: list[str] = field(default_factory=list)
    src_ns: list[str] = field(default_factory=list)
    dst_ns: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)

    def _sides(self, left: bool, right: bool) -> list[dict]:
        if self.left is None:
            self.left = {}
        if self.right is None:
            self.right = {}
        return [f for f, wanted in ((self.left, left), (self.right, right)) if wanted]

    def append(self, key: str, value: object, *, left: bool = True, right: bool = True) -> None:
        for flow_filter in self._sides(left, right):
            flow_filter.setdefault(key, []).append(value)

    def append_either(self, keys: tuple[str, str], value: object) -> None:
        self.append(keys[0], value, right=False)
        self.append(keys[1], value, left=False)

    def check_conflicts(self) -> None:
        for group in CONFLICT_GROUPS:
            for flag in group:
                if flag not in self.changed:
                    continue
                for other in group:
                    if other != flag and other in self.changed:
                        raise FilterFlagError(f"filters --{flag} and --{other} cannot be combined")

    def check_namespaces(self) -> None:
        for flow_filter in (self.left, self.right):
            if flow_filter is None:
                continue
            src_pod = flow_filter.get("source_pod", [])
            src_svc = flow_filter.get("source_service", [])
            dst_pod = flow_filter.get("destination_pod", [])
            dst_svc = flow_filter.get("destination_service", [])
            errors = [
                _namespace_conflicts(self.ns, src_pod),
                _namespace_conflicts(self.ns, src_svc),
                _namespace_conflicts(self.ns, dst_pod),
                _namespace_conflicts(self.ns, dst_svc),
                _namespace_conflicts(self.src_ns, src_pod),
                _namespace_conflicts(self.src_ns, src_svc),
                _namespace_conflicts(self.dst_ns, dst_pod),
                _namespace_conflicts(self.dst_ns, dst_svc),
                _inconsistent_namespaces(src_pod, src_svc),
                _inconsistent_namespaces(dst_pod, dst_svc),
            ]
            messages = [e for e in errors if e]
            if messages:
                raise FilterFlagError("\n".join(messages))

    def flow_filters(self) -> list[dict]:
        """Materialise the canonical FlowFilter dicts (one, or a left/right pair)."""
        if self.left is None and self.right is None and not (self.ns or self.src_ns or self.dst_ns):
            return []
        left = copy.deepcopy(self.left) if self.left is not None else {}
        right = copy.deepcopy(self.right) if self.right is not None else {}
        if self.dst_ns:
            _apply_namespaces(left, self.dst_ns, "destination")
            _apply_namespaces(right, self.dst_ns, "destination")
        if self.src_ns:
            _apply_namespaces(left, self.src_ns, "source")
            _apply_namespaces(right, self.src_ns, "source")
        if self.ns:
            _apply_namespaces(left, self.ns, "source")
            _apply_namespaces(right, self.ns, "destination")
        left_filter = canonical_flow_filter(left)
        right_filter = canonical_flow_filter(right)
        if left_filter == right_filter:
            return [left_filter]
        return [left_filter, right_filter]


@dataclass
class FilterBuilder:
    """Receives filter flags in command-line order and builds the allow and deny lists."""

    allow: FilterTracker | None = None
    deny: FilterTracker | None = None
    negate_next: bool = False

    @property
    def trailing_not(self) -> bool:
        """True when the last filter flag was a ``--not`` with nothing after it."""
        return self.negate_next

    def allow_filters(self) -> list[dict]:
        return self.allow.flow_filters() if self.allow is not None else []

    def deny_filters(self) -> list[dict]:
        return self.deny.flow_filters() if self.deny is not None else []

    def set(self, name: str, value: str) -> None:
        """Apply one filter flag (long name without dashes). Raises :class:`FilterFlagError`."""
        if name == "not":
            if self.negate_next:
                raise FilterFlagError("consecutive --not statements")
            self.negate_next = True
            return
        if self.negate_next:
            self.negate_next = False
            if self.deny is None:
                self.deny = FilterTracker()
            tracker = self.deny
        else:
            if self.allow is None:
                self.allow = FilterTracker()
            tracker = self.allow
        if name not in tracker.changed:
            tracker.changed.append(name)
        tracker.check_conflicts()
        _apply_flag(tracker, name, value)
        tracker.check_namespaces()


def _apply_flag(tracker: FilterTracker, name: str, value: str) -> None:
    either = _EITHER_SIDE_STRING_FLAGS.get(name)
    if either is not None:
        tracker.append_either(either, value)
        return
    plain = _PLAIN_STRING_FLAGS.get(name)
    if plain is not None:
        tracker.append(plain, value)
        return
    namespace = _NAMESPACE_FLAGS.get(name)
    if namespace is not None:
        attribute, fixed = namespace
        getattr(tracker, attribute).append(value if fixed is None else fixed)
        return
    if name == "verdict":
        tracker._sides(True, True)
        if value not in VERDICT_NAMES:
            raise FilterFlagError(f"invalid --verdict value: {value}")
        tracker.append("verdict", value)
    elif name == "drop-reason-desc":
        if value == "":
            raise FilterFlagError("empty --drop-reason-desc value")
        if value not in DROP_REASON_NAMES:
            raise FilterFlagError(f"invalid --drop-reason-desc value: {value}")
        tracker.append("drop_reason_desc", value)
    elif name == "type":
        tracker._sides(True, True)
        tracker.append("event_type", parse_event_type(value))
    elif name == "ipv4":
        tracker.append("ip_version", "IPv4")
    elif name == "ipv6":
        tracker.append("ip_version", "IPv6")
    elif name == "ip-version":
        tracker.append("ip_version", _ip_version(value))
    elif name == "http-header":
        key, sep, header_value = value.partition(":")
        if not sep:
            raise FilterFlagError(f'invalid http-header value "{_quote_inner(value)}", expected name:value')
        header = {}
        if key:
            header["key"] = key
        if header_value:
            header["value"] = header_value
        tracker.append("http_header", header)
    elif name == "ip-trace-id":
        if value == "0":
            raise FilterFlagError("invalid --ip-trace-id value; must be greater than 0")
        try:
            trace_id = go_parse_uint(value, 10, 64)
        except ValueError as exc:
            raise FilterFlagError(f"invalid --ip-trace-id value: {exc}") from None
        tracker.append("ip_trace_id", str(trace_id))
    elif name in ("workload", "from-workload", "to-workload"):
        workload = parse_workload(value)
        if name == "workload":
            tracker.append_either(("source_workload", "destination_workload"), workload)
        else:
            tracker.append("source_workload" if name == "from-workload" else "destination_workload", workload)
    elif name in ("identity", "from-identity", "to-identity"):
        identity = parse_identity(value)
        if name == "identity":
            tracker.append_either(("source_identity", "destination_identity"), identity)
        else:
            tracker.append("source_identity" if name == "from-identity" else "destination_identity", identity)
    elif name == "tcp-flags":
        tracker.append("tcp_flags", parse_tcp_flags(value))
    elif name == "traffic-direction":
        lowered = value.lower()
        if lowered not in ("ingress", "egress"):
            raise FilterFlagError(f"{lowered}: invalid traffic direction, expected ingress or egress")
        tracker.append("traffic_direction", lowered.upper())
    elif name == "cel-expression":
        for flow_filter in tracker._sides(True, True):
            flow_filter.setdefault("experimental", {}).setdefault("cel_expression", []).append(value)
    elif name == "interface":
        tracker.append("interface", {"name": value} if value else {})
    elif name == "encrypted":
        tracker.append("encrypted", True)
    elif name == "unencrypted":
        tracker.append("encrypted", False)
    else:  # pragma: no cover - the flag table and this dispatcher are kept in sync
        raise FilterFlagError(f"unknown filter flag --{name}")
