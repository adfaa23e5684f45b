"""A conservative fast reject on raw JSON line bytes, before decoding.

:func:`compile_byte_prefilter` derives, for each allow FlowFilter, a few *clauses* that any line
the filter can match must satisfy, each clause being "one of these byte strings occurs in the
line". Examples: ``--namespace cde`` (source or destination pod ``cde/``) needs ``"cde"``;
``--protocol tcp`` needs the key ``"TCP"``; ``--verdict DROPPED`` needs ``"DROPPED"`` unless the
verdict is not written as a plain string (see below). A line is rejected when every allow filter
has a clause that fails. Deny filters never reject anything here.

Soundness rules (the prefilter must never reject a line the full predicate accepts):

- lines containing a backslash are always kept, because any JSON string may be written with
  escapes (``\\u0063de`` is ``cde``, ``\\/`` is ``/``);
- only string *values* that canonical JSON writes verbatim are used as tokens (no quotes,
  backslashes, control characters, ``<``, ``>``, ``&``, U+2028/U+2029);
- numbers are never used, since their spelling is not unique;
- enums may be names or numbers: an enum clause can fail only when the key occurs exactly once in
  the line, directly followed by a string (``"verdict":"X"``), and that string is not wanted;
- when any allow filter could accept a record without a flow, or has no usable clause, there is
  no prefilter (None).

Lines the decoder would warn about (malformed JSON, unknown fields) can be rejected silently, so a
caller that must report those should not use the prefilter on them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hubblepy.filters import enums
from hubblepy.filters.compiler import compile_flow_filter, normalize_flow_filter

Clause = Callable[[bytes], bool]
_UNSAFE_CHARS = frozenset('"\\<>&\u2028\u2029')


def _safe(text: str) -> bool:
    return text != "" and not any(ch in _UNSAFE_CHARS or ord(ch) < 0x20 for ch in text)


class _Signed:
    """A clause function with a signature: equal signatures mean equal clauses."""

    __slots__ = ("fn", "signature")

    def __init__(self, signature: tuple[Any, ...], fn: Clause) -> None:
        self.signature = signature
        self.fn = fn


def _any_token(tokens: list[bytes]) -> _Signed:
    unique = tuple(sorted(set(tokens)))
    if len(unique) == 1:
        (token,) = unique
        return _Signed(("any", unique), lambda line: token in line)
    return _Signed(("any", unique), lambda line: any(token in line for token in unique))


def _string_values_clause(
    values: list[str], quote_start: bool = True, quote_end: bool = True
) -> _Signed | None:
    """A clause needing one of ``values`` as a (part of a) JSON string; None if any is unusable."""
    tokens = []
    for value in values:
        if not _safe(value):
            return None
        tokens.append((b'"' if quote_start else b"") + value.encode() + (b'"' if quote_end else b""))
    return _any_token(tokens) if tokens else None


def _enum_clause(table: dict[str, int], values: list[Any], keys: tuple[str, ...]) -> _Signed | None:
    names: set[bytes] = set()
    for value in values:
        forms = enums.both_forms(table, value, "enum")
        name = next((f for f in forms if isinstance(f, str)), None)
        if name is None or table.get(name) == 0:
            return None  # an unknown number or the default (omitted) value: nothing to look for
        names.add(name.encode())
    key_tokens = tuple(b'"' + key.encode() + b'"' for key in keys)
    markers = tuple(token + b':"' for token in key_tokens)
    wanted = frozenset(names)

    def clause(line: bytes) -> bool:
        # Judge only a line where the key is directly followed by a string and occurs nowhere
        # else: otherwise the value may be a number, spaced out, absent, or the key may belong
        # to another message too (a tunnel IP block, an extension).
        for marker in markers:
            pos = line.find(marker)
            if pos >= 0:
                break
        else:
            return True
        start = pos + len(marker)
        if line[start : line.find(b'"', start)] in wanted:
            return True
        return any(line.find(key, 0, pos) >= 0 or line.find(key, start) >= 0 for key in key_tokens)

    return _Signed(("enum", tuple(sorted(wanted)), markers), clause)


def _namespaced_clause(values: list[Any]) -> _Signed | None:
    tokens: list[str] = []
    for value in values:
        text = str(value)
        parts = text.split("/")
        if len(parts) == 1:
            namespace, prefix = "default", parts[0]
        else:
            namespace, prefix = parts[0], parts[1]
        if namespace:
            tokens.append('"' + namespace + '"')
        elif prefix:
            tokens.append('"' + prefix)
        else:
            return None
    if any(not _safe(t.strip('"')) for t in tokens):
        return None
    return _any_token([t.encode() for t in tokens])


def _node_name_clause(values: list[Any]) -> _Signed | None:
    tokens: list[bytes] = []
    for value in values:
        pattern = str(value)
        parts = pattern.split("/")
        node = parts[-1].strip().lower()
        if node.endswith("."):
            node = node[:-1]
        cluster = parts[0].strip().lower() if len(parts) == 2 else ""
        if cluster == "default":
            return None  # a flow node name without "/" counts as cluster "default"
        if node and "*" not in node and _safe(node):
            tokens.append(node.encode() + b'"')
        elif cluster and "*" not in cluster and _safe(cluster):
            tokens.append(b'"' + cluster.encode() + b"/")
        else:
            return None
    return _any_token(tokens) if tokens else None


def _fqdn_clause(values: list[Any]) -> _Signed | None:
    tokens: list[bytes] = []
    for value in values:
        pattern = str(value).strip().lower()
        if pattern.endswith("."):
            pattern = pattern[:-1]
        if "*" not in pattern:
            if not _safe(pattern):
                return None
            tokens.append(b'"' + pattern.encode() + b'"')
            continue
        longest = max(pattern.split("*"), key=len)
        if len(longest) < 3 or not _safe(longest):
            return None
        tokens.append(longest.encode())
    return _any_token(tokens) if tokens else None


_PROTOCOL_KEYS = {
    "tcp": ("TCP",),
    "udp": ("UDP",),
    "sctp": ("SCTP",),
    "icmp": ("ICMPv4", "ICMPv6"),
    "icmpv4": ("ICMPv4",),
    "icmpv6": ("ICMPv6",),
    "vrrp": ("VRRP",),
    "igmp": ("IGMP",),
    "dns": ("dns",),
    "http": ("http",),
    "kafka": ("kafka",),
}
_TCP_FLAG_NAMES = ("FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR", "NS")


def _clauses(ff: dict[str, Any]) -> list[_Signed]:
    clauses: list[_Signed | None] = []
    if ff.get("uuid"):
        clauses.append(_string_values_clause([str(v) for v in ff["uuid"]]))
    if ff.get("verdict"):
        clauses.append(_enum_clause(enums.VERDICT, ff["verdict"], ("verdict",)))
    if ff.get("drop_reason_desc"):
        clauses.append(_enum_clause(enums.VERDICT, ["DROPPED"], ("verdict",)))
        clauses.append(
            _enum_clause(enums.DROP_REASON, ff["drop_reason_desc"], ("drop_reason_desc", "dropReasonDesc"))
        )
    if ff.get("traffic_direction"):
        clauses.append(
            _enum_clause(
                enums.TRAFFIC_DIRECTION, ff["traffic_direction"], ("traffic_direction", "trafficDirection")
            )
        )
    if ff.get("ip_version"):
        clauses.append(_enum_clause(enums.IP_VERSION, ff["ip_version"], ("ipVersion",)))
    if ff.get("protocol"):
        keys = [k for p in ff["protocol"] for k in _PROTOCOL_KEYS[str(p).lower()]]
        clauses.append(_any_token([b'"' + k.encode() + b'"' for k in keys]))
    for field in ("source_ip", "destination_ip", "source_ip_xlated"):
        values = ff.get(field)
        if values:
            if any("/" in str(v) for v in values):
                clauses.append(None)
            else:
                clauses.append(_string_values_clause([str(v) for v in values]))
    for field in ("source_pod", "destination_pod", "source_service", "destination_service"):
        if ff.get(field):
            clauses.append(_namespaced_clause(ff[field]))
    for field in ("source_fqdn", "destination_fqdn"):
        if ff.get(field):
            clauses.append(_fqdn_clause(ff[field]))
    if ff.get("dns_query"):
        clauses.append(_any_token([b'"dns"']))
    if any(ff.get(f) for f in ("http_status_code", "http_method", "http_path", "http_url", "http_header")):
        clauses.append(_any_token([b'"http"']))
    if ff.get("tcp_flags"):
        tokens: list[bytes] = []
        for flags in ff["tcp_flags"]:
            first = next((n for n in _TCP_FLAG_NAMES if flags.get(n)), None)
            if first is None:
                tokens = []
                break
            tokens.append(b'"' + first.encode() + b'"')
        clauses.append(_any_token(tokens) if tokens else None)
    if ff.get("node_name"):
        clauses.append(_node_name_clause(ff["node_name"]))
    for field in ("source_cluster_name", "destination_cluster_name", "trace_id"):
        if ff.get(field):
            clauses.append(_string_values_clause([str(v) for v in ff[field]]))
    return [c for c in clauses if c is not None]


def compile_byte_prefilter(
    allow: list[dict[str, Any]], deny: list[dict[str, Any]]
) -> Callable[[bytes], bool] | None:
    """Return ``may_match(line_bytes) -> bool`` or None when no safe prefilter exists.

    ``may_match`` returning False proves that the full predicate of
    ``compile_flow_filters(allow, deny)`` rejects the decoded line. ``deny`` is accepted for
    symmetry but never used to reject. Filters are validated like the full compiler does.
    """
    del deny  # deny filters can only remove records; they never prove a line cannot match
    if not allow:
        return None
    # Either-side flags give filters with identical clauses; keep one of each.
    per_filter_sigs: dict[frozenset[tuple[Any, ...]], tuple[Clause, ...]] = {}
    compiled = [compile_flow_filter(ff) for ff in allow]  # validates every filter first
    for ff, (_, flowless) in zip(allow, compiled, strict=True):
        if flowless:
            return None
        clauses = {c.signature: c.fn for c in _clauses(normalize_flow_filter(ff))}
        if not clauses:
            return None
        per_filter_sigs.setdefault(frozenset(clauses), tuple(clauses.values()))
    per_filter = list(per_filter_sigs.values())

    if len(per_filter) == 1 and len(per_filter[0]) == 1:
        (only,) = per_filter[0]

        def single(line: bytes) -> bool:
            return b"\\" in line or only(line)

        return single

    def may_match(line: bytes) -> bool:
        if b"\\" in line:
            return True
        for clauses in per_filter:
            for clause in clauses:
                if not clause(line):
                    break
            else:
                return True
        return False

    return may_match
