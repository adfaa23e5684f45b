"""Checks a policy document the way the Kubernetes API server (CRD schema) and Cilium's rule
sanitisation would, after :mod:`hubblepy.policy.parse` has checked it and before its policy is used.

:func:`check_document` raises :class:`FieldProblem` (a field path and a one-line reason) for the
first problem. The parser's own checks come first (their messages win where both look); this
module adds what the parser does not insist on:

* ``metadata``: only ObjectMeta fields; ``name`` a DNS subdomain, ``namespace`` a DNS label;
  ``labels`` and ``annotations`` maps of strings, label keys and values in Kubernetes syntax;
* selectors: ``matchLabels`` keys (after an optional ``source:`` prefix such as ``k8s:``) qualified
  names, ``matchExpressions`` values label values;
* enum values exactly as the CRD spells them (``protocol: tcp`` is an error, not ``TCP``);
* Cilium's ``IngressRule``/``EgressRule`` sanitisation: one kind of L3 peer per rule (``toFQDNs``
  with ``toEndpoints`` is an error), at most 40 ports per ``toPorts`` element, a port on every
  ``ports`` entry;
* Cilium's ``PortRule``/``L7Rules`` sanitisation: L7 rules need ports and none may be 0; HTTP rules
  only on TCP; DNS rules only on egress, only to port 53 (no range); one L7 kind per rule;
  ``rules.http`` entries objects with string regexes that compile; no L7 rules in host policies; ``toFQDNs`` and ``rules.dns``
  selectors with exactly one of ``matchName``/``matchPattern`` in DNS syntax.
"""

from __future__ import annotations

import re
from typing import Any

CNP_KINDS = ("CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy")
NETWORK_POLICY = "NetworkPolicy"
PROTOCOLS = ("TCP", "UDP", "SCTP", "ANY")
MAX_PORTS = 40  # Cilium's maxPorts per toPorts element

_OBJECT_META = {
    "name",
    "namespace",
    "labels",
    "annotations",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generateName",
    "ownerReferences",
    "finalizers",
    "managedFields",
    "selfLink",
}
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_NAME_PART = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_SOURCE = re.compile(r"^[a-z0-9-]+:")  # Cilium's k8s:, any:, reserved:, container: ...
# the CRD's FQDN patterns: DNS labels (with * in matchPattern), dot separated, optional final dot
_FQDN_NAME = re.compile(
    r"^(([a-zA-Z0-9]|[a-zA-Z0-9][-a-zA-Z0-9]*[a-zA-Z0-9])\.)*"
    r"([a-zA-Z0-9]|[a-zA-Z0-9][-a-zA-Z0-9]*[a-zA-Z0-9])\.?$"
)
_FQDN_PATTERN = re.compile(
    r"^(([a-zA-Z0-9*]|[a-zA-Z0-9*][-a-zA-Z0-9*]*[a-zA-Z0-9*])\.)*"
    r"([a-zA-Z0-9*]|[a-zA-Z0-9*][-a-zA-Z0-9*]*[a-zA-Z0-9*])\.?$"
)
_FQDN_MAX = 255
_L3_INGRESS = ("fromEndpoints", "fromCIDR", "fromCIDRSet", "fromEntities", "fromNodes", "fromGroups")
_L3_EGRESS = (
    "toCIDR",
    "toCIDRSet",
    "toEndpoints",
    "toEntities",
    "toServices",
    "toFQDNs",
    "toGroups",
    "toNodes",
)
_HTTP_STRINGS = ("method", "path", "host")


class FieldProblem(ValueError):
    """One problem: ``path`` (dotted, with [i] indexes; "" for the document) and ``reason``."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}" if path else reason)
        self.path = path
        self.reason = reason


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"' if len(value) <= 80 else f'"{value[:77]}..."'
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return str(value)
    return _kind_of(value)


_KIND_NAMES: dict[type, str] = {
    dict: "an object",
    list: "a list",
    str: "a string",
    bool: "a boolean",
    int: "a number",
    float: "a number",
    type(None): "null",
}


def _kind_of(value: Any) -> str:
    return _KIND_NAMES.get(type(value), type(value).__name__)


def _items(value: Any, path: str) -> list:
    """A list field (None: empty); anything else is a problem."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise FieldProblem(path, f"must be a list, got {_kind_of(value)}")
    return value


def _object(value: Any, path: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise FieldProblem(path, f"must be an object, got {_kind_of(value)}")
    return value


# -- Kubernetes syntax --------------------------------------------------------------------------


def label_key_problem(key: Any) -> str | None:
    """Why ``key`` is not a Kubernetes qualified name (``[prefix/]name``), or None."""
    if not isinstance(key, str):
        return f"label keys must be strings, got {_kind_of(key)} {_show(key)}"
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return f"{_show(key)} is not a valid label key (the prefix must be a DNS subdomain)"
    if not name or len(name) > 63 or not _NAME_PART.match(name):
        return (
            f"{_show(key)} is not a valid label key (at most 63 characters: letters, digits, "
            "'-', '_', '.', starting and ending with a letter or digit)"
        )
    return None


def label_value_problem(value: Any) -> str | None:
    """Why ``value`` is not a Kubernetes label value, or None."""
    if not isinstance(value, str):
        return f"label values must be strings, got {_kind_of(value)} {_show(value)}"
    if len(value) > 63 or not _LABEL_VALUE.match(value):
        return (
            f"{_show(value)} is not a valid label value (at most 63 characters: letters, digits, "
            "'-', '_', '.', starting and ending with a letter or digit)"
        )
    return None


def _labels(value: Any, path: str, selector_keys: bool = False) -> None:
    for key, val in _object(value, path).items():
        kpath = _join(path, str(key))
        check_key = _LABEL_SOURCE.sub("", key, count=1) if selector_keys and isinstance(key, str) else key
        problem = label_key_problem(check_key) or label_value_problem(val)
        if problem:
            raise FieldProblem(kpath, problem)


def _metadata(meta: Any, cluster_wide: bool) -> None:
    meta = _object(meta, "metadata")
    for key in meta:
        if key not in _OBJECT_META:
            raise FieldProblem(_join("metadata", str(key)), "unknown field")
    name = meta.get("name")
    if isinstance(name, str) and name and (len(name) > 253 or not _DNS_SUBDOMAIN.match(name)):
        raise FieldProblem(
            "metadata.name",
            f"{_show(name)} is not a valid name (lowercase letters, digits, '-' and '.', at most 253)",
        )
    namespace = meta.get("namespace")
    if namespace is not None and not cluster_wide:
        if not isinstance(namespace, str):
            raise FieldProblem("metadata.namespace", f"must be a string, got {_kind_of(namespace)}")
        if namespace and (len(namespace) > 63 or not _DNS_LABEL.match(namespace)):
            raise FieldProblem(
                "metadata.namespace",
                f"{_show(namespace)} is not a valid namespace (a DNS label: lowercase letters, digits, '-')",
            )
    _labels(meta.get("labels"), "metadata.labels")
    for key, val in _object(meta.get("annotations"), "metadata.annotations").items():
        apath = _join("metadata.annotations", str(key))
        problem = label_key_problem(key)
        if problem:
            raise FieldProblem(apath, problem.replace("label key", "annotation key"))
        if not isinstance(val, str):
            raise FieldProblem(apath, f"annotation values must be strings, got {_kind_of(val)}")


def _selector(value: Any, path: str) -> None:
    sel = _object(value, path)
    _labels(sel.get("matchLabels"), _join(path, "matchLabels"), selector_keys=True)
    epath = _join(path, "matchExpressions")
    for i, expr in enumerate(_items(sel.get("matchExpressions"), epath)):
        ipath = f"{epath}[{i}]"
        if not isinstance(expr, dict):
            continue  # the parser names the type problem
        key = expr.get("key")
        if isinstance(key, str) and key:
            problem = label_key_problem(_LABEL_SOURCE.sub("", key, count=1))
            if problem:
                raise FieldProblem(_join(ipath, "key"), problem)
        vals = expr.get("values")
        if isinstance(vals, list):
            for j, val in enumerate(vals):
                problem = label_value_problem(val)
                if problem:
                    raise FieldProblem(f"{_join(ipath, 'values')}[{j}]", problem)


# -- regexes and FQDNs ----------------------------------------------------------------------------


def _regex(value: Any, path: str) -> None:
    if not isinstance(value, str):
        raise FieldProblem(path, f"must be a string (a regular expression), got {_kind_of(value)}")
    try:
        re.compile(value)
    except re.error as exc:
        raise FieldProblem(path, f"{_show(value)} is not a valid regular expression: {exc}") from None


def check_fqdn_selector(value: Any, path: str) -> None:
    """One ``toFQDNs`` / ``rules.dns`` selector: exactly one of matchName or matchPattern, valid."""
    if not isinstance(value, dict):
        raise FieldProblem(path, f"must be an object, got {_kind_of(value)}")
    present = [k for k in ("matchName", "matchPattern") if value.get(k) not in (None, "")]
    if len(present) != 1:
        raise FieldProblem(path, "needs exactly one of matchName or matchPattern")
    key = present[0]
    text = value[key]
    kpath = _join(path, key)
    if not isinstance(text, str):
        raise FieldProblem(kpath, f"must be a string, got {_kind_of(text)}")
    syntax = _FQDN_NAME if key == "matchName" else _FQDN_PATTERN
    if len(text) > _FQDN_MAX or not syntax.match(text):
        what = "DNS name" if key == "matchName" else "DNS name pattern (labels of letters, digits, '-', '*')"
        raise FieldProblem(kpath, f"{_show(text)} is not a valid {what}")


# -- ports and L7 rules ---------------------------------------------------------------------------


def _enum(value: Any, path: str, allowed: tuple[str, ...], what: str = "protocol") -> None:
    if value is None:
        return
    if value not in allowed:
        hint = (
            f' (did you mean "{value.upper()}"?)'
            if isinstance(value, str) and value.upper() in allowed
            else ""
        )
        raise FieldProblem(path, f"{_show(value)} is not a valid {what} ({', '.join(allowed)}){hint}")


def _port_number(port: dict) -> int | None:
    """The port's number (None for a named port or an unparsable value: the parser reports it)."""
    raw = port.get("port")
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and raw.strip().isdigit():
        return int(raw.strip())
    return None


def _http_rule(value: Any, path: str) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        raise FieldProblem(
            path, f"must be an object (method, path, host, headers, headerMatches), got {_kind_of(value)}"
        )
    for key in _HTTP_STRINGS:
        if value.get(key) is not None:
            _regex(value[key], _join(path, key))
    hpath = _join(path, "headers")
    for i, header in enumerate(_items(value.get("headers"), hpath)):
        if not isinstance(header, str):
            raise FieldProblem(f"{hpath}[{i}]", f"must be a string, got {_kind_of(header)}")
    mpath = _join(path, "headerMatches")
    for i, match in enumerate(_items(value.get("headerMatches"), mpath)):
        ipath = f"{mpath}[{i}]"
        if not isinstance(match, dict):
            raise FieldProblem(ipath, f"must be an object, got {_kind_of(match)}")
        if not isinstance(match.get("name"), str) or not match.get("name"):
            raise FieldProblem(_join(ipath, "name"), "is required (the header name)")
        _enum(
            match.get("mismatch"),
            _join(ipath, "mismatch"),
            ("LOG", "ADD", "DELETE", "REPLACE"),
            "mismatch action",
        )


def _port_rule(item: Any, path: str, ingress: bool, deny: bool) -> None:
    if not isinstance(item, dict):
        return  # the parser names the type problem
    ppath = _join(path, "ports")
    ports = _items(item.get("ports"), ppath)
    if len(ports) > MAX_PORTS:
        raise FieldProblem(ppath, f"{len(ports)} ports, at most {MAX_PORTS} per toPorts element")
    for j, port in enumerate(ports):
        if not isinstance(port, dict):
            continue
        jpath = f"{ppath}[{j}]"
        if port.get("port") in (None, ""):
            raise FieldProblem(_join(jpath, "port"), "is required")
        _enum(port.get("protocol"), _join(jpath, "protocol"), PROTOCOLS)
    rules = item.get("rules")
    if rules is None or deny:  # deny rules take no L7 rules: the parser says so
        return
    rpath = _join(path, "rules")
    if not isinstance(rules, dict):
        raise FieldProblem(rpath, f"must be an object, got {_kind_of(rules)}")
    kinds = [k for k in ("http", "kafka", "dns", "l7proto") if rules.get(k) is not None]
    if "l7" in rules and rules.get("l7proto") in (None, ""):
        raise FieldProblem(_join(rpath, "l7"), "may only be used with l7proto")
    if len(kinds) > 1:
        raise FieldProblem(
            rpath, f"only one L7 rule type per port is allowed, got {', '.join(sorted(kinds))}"
        )
    if not kinds:
        return
    kind = kinds[0]
    for key in ("http", "kafka", "dns", "l7"):
        if key in rules and rules[key] is not None and not isinstance(rules[key], list):
            raise FieldProblem(_join(rpath, key), f"must be a list, got {_kind_of(rules[key])}")
    if kind == "dns" and ingress:
        raise FieldProblem(_join(rpath, "dns"), "DNS rules are not allowed on ingress")
    if not ports:
        raise FieldProblem(ppath, f"L7 rules ({kind}) need a port (not every port)")
    for j, port in enumerate(ports):
        if not isinstance(port, dict):
            continue
        jpath = f"{ppath}[{j}]"
        number = _port_number(port)
        if number == 0:
            raise FieldProblem(_join(jpath, "port"), "L7 rules cannot be used when a port is 0")
        if kind == "dns":
            end = port.get("endPort")
            if isinstance(end, int) and not isinstance(end, bool) and number is not None and end > number:
                raise FieldProblem(_join(jpath, "endPort"), "DNS rules do not support port ranges")
            if number != 53:
                raise FieldProblem(
                    _join(jpath, "port"),
                    f"DNS rules are only allowed on port 53, got {_show(port.get('port'))}",
                )
        elif port.get("protocol") != "TCP":
            proto = port.get("protocol") or "ANY"
            raise FieldProblem(
                _join(jpath, "protocol"),
                f"L7 rules can only apply to TCP (not {proto}) except for DNS rules",
            )
    if kind == "http":
        hpath = _join(rpath, "http")
        for k, rule in enumerate(rules["http"]):
            _http_rule(rule, f"{hpath}[{k}]")
    elif kind == "dns":
        dpath = _join(rpath, "dns")
        for k, rule in enumerate(rules["dns"]):
            check_fqdn_selector(rule, f"{dpath}[{k}]")


# -- rules ------------------------------------------------------------------------------------------


def _peer_rule(rule: Any, path: str, ingress: bool, deny: bool) -> None:
    if not isinstance(rule, dict):
        return
    members = _L3_INGRESS if ingress else _L3_EGRESS
    used = [m for m in members if isinstance(rule.get(m), list) and rule[m]]
    if len(used) > 1:
        raise FieldProblem(
            path, f"combining {used[0]} and {used[1]} in one rule is not supported (as in Cilium)"
        )
    for key in ("fromEndpoints", "toEndpoints"):
        if key in rule:
            for j, sel in enumerate(_items(rule[key], _join(path, key))):
                _selector(sel, f"{_join(path, key)}[{j}]")
    if not ingress and "toFQDNs" in rule:
        fpath = _join(path, "toFQDNs")
        for j, sel in enumerate(_items(rule["toFQDNs"], fpath)):
            check_fqdn_selector(sel, f"{fpath}[{j}]")
    if "toPorts" in rule:
        tpath = _join(path, "toPorts")
        for j, item in enumerate(_items(rule["toPorts"], tpath)):
            _port_rule(item, f"{tpath}[{j}]", ingress, deny)


def _spec(spec: Any, path: str) -> None:
    if not isinstance(spec, dict):
        return
    if spec.get("nodeSelector") is not None:
        for key in ("ingress", "egress"):
            for i, rule in enumerate(_items(spec.get(key), _join(path, key))):
                ports = rule.get("toPorts") if isinstance(rule, dict) else None
                for j, item in enumerate(ports if isinstance(ports, list) else []):
                    if isinstance(item, dict) and item.get("rules"):
                        raise FieldProblem(
                            f"{_join(path, key)}[{i}].toPorts[{j}].rules",
                            "host policies (nodeSelector) do not support L7 rules",
                        )
    for key in ("endpointSelector", "nodeSelector"):
        if spec.get(key) is not None:
            _selector(spec[key], _join(path, key))
    for key in ("ingress", "ingressDeny", "egress", "egressDeny"):
        for i, rule in enumerate(_items(spec.get(key), _join(path, key))):
            _peer_rule(rule, f"{_join(path, key)}[{i}]", key.startswith("ingress"), key.endswith("Deny"))


def _network_policy(spec: Any) -> None:
    if not isinstance(spec, dict):
        return
    if spec.get("podSelector") is not None:
        _selector(spec["podSelector"], "spec.podSelector")
    for direction, peer_key in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate(_items(spec.get(direction), f"spec.{direction}")):
            if not isinstance(rule, dict):
                continue
            rpath = f"spec.{direction}[{i}]"
            for j, peer in enumerate(_items(rule.get(peer_key), _join(rpath, peer_key))):
                if not isinstance(peer, dict):
                    continue
                for sel in ("podSelector", "namespaceSelector"):
                    if peer.get(sel) is not None:
                        _selector(peer[sel], f"{_join(rpath, peer_key)}[{j}].{sel}")
            for j, port in enumerate(_items(rule.get("ports"), _join(rpath, "ports"))):
                if isinstance(port, dict):
                    # "ANY" is a valid word that NetworkPolicy does not take: the parser says so
                    _enum(port.get("protocol"), f"{_join(rpath, 'ports')}[{j}].protocol", PROTOCOLS)


def check_document(doc: dict) -> None:
    """Raises FieldProblem for the first schema/sanitisation problem of one policy document."""
    kind = doc.get("kind")
    if kind not in (*CNP_KINDS, NETWORK_POLICY):
        return  # the parser names the unsupported kind
    if "metadata" in doc:
        _metadata(doc["metadata"], kind == "CiliumClusterwideNetworkPolicy")
    if kind == NETWORK_POLICY:
        _network_policy(doc.get("spec"))
        return
    if "spec" in doc:
        _spec(doc["spec"], "spec")
    if "specs" in doc:
        for i, spec in enumerate(_items(doc["specs"], "specs")):
            _spec(spec, f"specs[{i}]")
