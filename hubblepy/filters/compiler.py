"""Compile allow/deny lists of canonical FlowFilter dicts into one record predicate.

Each FlowFilter is compiled once into a closure that checks only its set fields (AND across
fields, OR across the values of one field). The allow list is OR-ed and the deny list is
OR-ed: a record passes when it matches an allow filter (or there is none) and no deny filter.

Records without a ``flow`` (lost events, node status, ``{}``) are decided once at compile
time. Hubble hands such records to its filters as a nil flow, which behaves like an empty
flow except that the uuid, verdict, drop-reason, IP-version and traffic-direction filters
reject it outright. So ``--unencrypted`` and label selectors such as ``!k`` let them through,
while ``--verdict VERDICT_UNKNOWN`` or ``--ip-version none`` do not.

Fields are built in Hubble's order so that, of several invalid fields, the same one is
reported first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hubblepy.filters import fields
from hubblepy.filters.errors import FilterError

Record = dict[str, Any]
Check = fields.Check

# Fields that, given no flow at all, reject without looking (Hubble checks for a nil flow).
_NIL_FLOW_REJECTS = frozenset(("uuid", "verdict", "drop_reason_desc", "ip_version", "traffic_direction"))

_CAMEL_TO_PROTO = {
    "sourceIp": "source_ip",
    "sourceIpXlated": "source_ip_xlated",
    "sourcePod": "source_pod",
    "sourceFqdn": "source_fqdn",
    "sourceLabel": "source_label",
    "sourceService": "source_service",
    "sourceWorkload": "source_workload",
    "sourceClusterName": "source_cluster_name",
    "destinationIp": "destination_ip",
    "destinationPod": "destination_pod",
    "destinationFqdn": "destination_fqdn",
    "destinationLabel": "destination_label",
    "destinationService": "destination_service",
    "destinationWorkload": "destination_workload",
    "destinationClusterName": "destination_cluster_name",
    "trafficDirection": "traffic_direction",
    "dropReasonDesc": "drop_reason_desc",
    "eventType": "event_type",
    "httpStatusCode": "http_status_code",
    "sourcePort": "source_port",
    "destinationPort": "destination_port",
    "dnsQuery": "dns_query",
    "sourceIdentity": "source_identity",
    "destinationIdentity": "destination_identity",
    "httpMethod": "http_method",
    "httpPath": "http_path",
    "httpUrl": "http_url",
    "httpHeader": "http_header",
    "tcpFlags": "tcp_flags",
    "nodeName": "node_name",
    "nodeLabels": "node_labels",
    "ipVersion": "ip_version",
    "traceId": "trace_id",
    "ipTraceId": "ip_trace_id",
}


def _node_labels(flow: fields.Flow) -> list[str] | None:
    return flow.get("node_labels")


def _source_labels(flow: fields.Flow) -> list[str] | None:
    endpoint = flow.get("source")
    return None if endpoint is None else endpoint.get("labels")


def _destination_labels(flow: fields.Flow) -> list[str] | None:
    endpoint = flow.get("destination")
    return None if endpoint is None else endpoint.get("labels")


def _http_builder(
    label: str, build: Callable[[list[Any]], Check]
) -> Callable[[list[Any], dict[str, Any]], Check]:
    def builder(values: list[Any], ff: dict[str, Any]) -> Check:
        if not fields.http_compatible(ff.get("event_type") or []):
            raise FilterError(
                f"filtering by {label} requires the event type filter to only match 'l7' events"
            )
        return build(values)

    return builder


def _plain(build: Callable[[list[Any]], Check]) -> Callable[[list[Any], dict[str, Any]], Check]:
    return lambda values, ff: build(values)


# (field name, builder) in Hubble's DefaultFilters order.
_BUILDERS: list[tuple[str, Callable[[list[Any], dict[str, Any]], Check]]] = [
    ("uuid", _plain(fields.build_uuid)),
    ("event_type", _plain(fields.build_event_type)),
    ("verdict", _plain(fields.build_verdict)),
    ("drop_reason_desc", _plain(fields.build_drop_reason_desc)),
    ("reply", _plain(fields.build_reply)),
    ("encrypted", _plain(fields.build_encrypted)),
    ("source_identity", _plain(lambda v: fields.build_identity(v, "source"))),
    ("destination_identity", _plain(lambda v: fields.build_identity(v, "destination"))),
    ("protocol", _plain(fields.build_protocol)),
    ("source_ip", _plain(lambda v: fields.build_ip(v, "source"))),
    ("destination_ip", _plain(lambda v: fields.build_ip(v, "destination"))),
    ("source_ip_xlated", _plain(lambda v: fields.build_ip(v, "source_xlated"))),
    ("source_pod", _plain(lambda v: fields.build_pod(v, "source"))),
    ("destination_pod", _plain(lambda v: fields.build_pod(v, "destination"))),
    ("source_workload", _plain(lambda v: fields.build_workload(v, "source"))),
    ("destination_workload", _plain(lambda v: fields.build_workload(v, "destination"))),
    ("source_service", _plain(lambda v: fields.build_service(v, "source"))),
    ("destination_service", _plain(lambda v: fields.build_service(v, "destination"))),
    ("source_fqdn", _plain(lambda v: fields.build_fqdn(v, "source_names"))),
    ("destination_fqdn", _plain(lambda v: fields.build_fqdn(v, "destination_names"))),
    ("dns_query", _plain(fields.build_dns_query)),
    ("source_label", _plain(lambda v: fields.build_labels(v, _source_labels, "source"))),
    ("destination_label", _plain(lambda v: fields.build_labels(v, _destination_labels, "destination"))),
    ("node_labels", _plain(lambda v: fields.build_labels(v, _node_labels, "node"))),
    ("source_port", _plain(lambda v: fields.build_port(v, "source"))),
    ("destination_port", _plain(lambda v: fields.build_port(v, "destination"))),
    ("http_status_code", _http_builder("http status code", fields.build_http_status)),
    ("http_method", _http_builder("http method", fields.build_http_method)),
    ("http_path", _http_builder("http path", fields.build_http_path)),
    ("http_url", _http_builder("http url", fields.build_http_url)),
    ("http_header", _http_builder("http headers", fields.build_http_header)),
    ("tcp_flags", _plain(fields.build_tcp_flags)),
    ("node_name", _plain(fields.build_node_name)),
    ("source_cluster_name", _plain(lambda v: fields.build_cluster_name(v, "source"))),
    ("destination_cluster_name", _plain(lambda v: fields.build_cluster_name(v, "destination"))),
    ("ip_version", _plain(fields.build_ip_version)),
    ("trace_id", _plain(fields.build_trace_id)),
    ("traffic_direction", _plain(fields.build_traffic_direction)),
    ("interface", _plain(fields.build_interface)),
    ("ip_trace_id", _plain(fields.build_ip_trace_id)),
]
_KNOWN_FIELDS = frozenset(name for name, _ in _BUILDERS) | {"experimental"}


def normalize_flow_filter(ff: dict[str, Any]) -> dict[str, Any]:
    """Return ``ff`` with lowerCamel keys renamed to proto names; reject unknown keys."""
    if not isinstance(ff, dict):
        raise FilterError(f"invalid FlowFilter: expected an object, got {type(ff).__name__}")
    out: dict[str, Any] = {}
    for key, value in ff.items():
        name = _CAMEL_TO_PROTO.get(key, key)
        if name not in _KNOWN_FIELDS:
            raise FilterError(f"invalid FlowFilter: unknown field {key!r}")
        out[name] = value
    return out


def _and(checks: list[Check]) -> Check:
    if not checks:
        return lambda flow: True
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks
        return lambda flow: first(flow) and second(flow)
    if len(checks) == 3:
        first, second, third = checks
        return lambda flow: first(flow) and second(flow) and third(flow)
    all_checks = tuple(checks)
    return lambda flow: all(check(flow) for check in all_checks)


def compile_flow_filter(ff: dict[str, Any]) -> tuple[Check, bool]:
    """Compile one FlowFilter: (check over a flow dict, result for a record without flow)."""
    ff = normalize_flow_filter(ff)
    experimental = ff.get("experimental") or {}
    if experimental.get("cel_expression") or experimental.get("celExpression"):
        raise FilterError("CEL expression filters are not supported")
    checks: list[Check] = []
    flowless = True
    empty_flow: dict[str, Any] = {}
    for name, builder in _BUILDERS:
        values = ff.get(name)
        if values is None or values == []:
            continue
        if not isinstance(values, list):
            raise FilterError(f"invalid FlowFilter: field {name!r} must be a list")
        try:
            check = builder(values, ff)
        except FilterError:
            raise
        except (TypeError, ValueError, AttributeError, KeyError) as err:
            raise FilterError(f"invalid FlowFilter: bad value in field {name!r}: {err}") from None
        checks.append(check)
        if flowless and (name in _NIL_FLOW_REJECTS or not check(empty_flow)):
            flowless = False
    return _and(checks), flowless


def _any(checks: list[Check]) -> Check:
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks
        return lambda flow: first(flow) or second(flow)
    all_checks = tuple(checks)
    return lambda flow: any(check(flow) for check in all_checks)


def compile_flow_filters(allow: list[dict[str, Any]], deny: list[dict[str, Any]]) -> Callable[[Record], bool]:
    """Return ``predicate(record) -> bool`` for canonical GetFlowsResponse dicts.

    A record passes when it matches at least one allow filter (or ``allow`` is empty) and no
    deny filter. Raises :class:`FilterError` (upstream's message) for an invalid filter.
    """
    allow_compiled = [compile_flow_filter(ff) for ff in allow]
    deny_compiled = [compile_flow_filter(ff) for ff in deny]
    flowless = (not allow_compiled or any(f for _, f in allow_compiled)) and not any(
        f for _, f in deny_compiled
    )
    allow_checks = [c for c, _ in allow_compiled]
    deny_checks = [c for c, _ in deny_compiled]

    if not allow_checks and not deny_checks:
        return lambda record: True
    if allow_checks and not deny_checks:
        allowed = _any(allow_checks)

        def allow_only(record: Record) -> bool:
            flow = record.get("flow")
            if flow is None:
                return flowless
            return allowed(flow)

        return allow_only
    denied = _any(deny_checks)
    if not allow_checks:

        def deny_only(record: Record) -> bool:
            flow = record.get("flow")
            if flow is None:
                return flowless
            return not denied(flow)

        return deny_only
    allowed = _any(allow_checks)

    def allow_and_deny(record: Record) -> bool:
        flow = record.get("flow")
        if flow is None:
            return flowless
        return allowed(flow) and not denied(flow)

    return allow_and_deny
