"""CiliumNetworkPolicy / CiliumClusterwideNetworkPolicy YAML -> validated :class:`Policy` objects.

Every document of a file is validated before anything is returned; the first problem raises
:class:`PolicyError` naming the file, the document (1-based index and namespace/name), the field path
and the reason, so a bad file is rejected whole.

Per-field choices (see docs/lab.md, "Policy support"):

* enforced: endpointSelector, ingress/egress, fromEndpoints/toEndpoints, fromEntities/toEntities,
  toPorts.ports (port, protocol TCP/UDP/SCTP/ANY), enableDefaultDeny, labels, description;
* loaded with a warning, not enforced: ``toPorts[].rules`` (L7 HTTP/Kafka/DNS: the port is allowed
  at L4), ``toFQDNs`` (the FQDN peers are not learned, so that peer part allows nothing: fails closed);
* rejected as not supported yet: nodeSelector (host policies), ingressDeny/egressDeny, CIDR rules,
  services/groups/nodes/requires peers, icmps, authentication, endPort, named ports, TLS options;
* rejected as unknown: any other field.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from hubblepy.policy.model import CCNP, CNP, PROTOCOLS, PeerRule, Policy, PolicyRef, SpecRule
from hubblepy.policy.selector import OPERATORS, Selector, requirement

ENTITIES = (
    "all",
    "world",
    "world-ipv4",
    "world-ipv6",
    "cluster",
    "host",
    "remote-node",
    "kube-apiserver",
    "health",
    "init",
    "unmanaged",
    "ingress",
)
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_NOT_YET = "is not supported yet"

_RULE_FIELDS = {
    "endpointSelector",
    "nodeSelector",
    "ingress",
    "egress",
    "ingressDeny",
    "egressDeny",
    "labels",
    "description",
    "enableDefaultDeny",
    "log",
}
_UNSUPPORTED_RULE = {
    "nodeSelector": "host policies (nodeSelector) are not supported yet",
    "ingressDeny": f"ingressDeny {_NOT_YET}",
    "egressDeny": f"egressDeny {_NOT_YET}",
    "log": f"log {_NOT_YET}",
}
_INGRESS_FIELDS = {"fromEndpoints", "fromEntities", "toPorts"}
_EGRESS_FIELDS = {"toEndpoints", "toEntities", "toPorts", "toFQDNs"}
_UNSUPPORTED_PEER = {
    "fromCIDR",
    "fromCIDRSet",
    "fromRequires",
    "fromGroups",
    "fromNodes",
    "toCIDR",
    "toCIDRSet",
    "toRequires",
    "toGroups",
    "toNodes",
    "toServices",
    "icmps",
    "authentication",
}
_PORT_RULE_FIELDS = {"ports", "rules"}
_UNSUPPORTED_PORT_RULE = {"terminatingTLS", "originatingTLS", "serverNames", "listener"}
_L7_KINDS = {"http", "kafka", "dns", "l7proto", "l7"}


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class PolicyError(Exception):
    """A policy file that cannot be applied; the message is one line for the user."""


class _FieldError(Exception):
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}" if path else reason)


def _quote(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, int | float) else type(value).__name__


def _type_name(value: Any) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _expect(value: Any, kind: type, path: str, what: str) -> None:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _FieldError(path, f"must be {what}, got {_type_name(value)}")


def _check_fields(
    obj: dict, path: str, allowed: Iterable[str], unsupported: dict[str, str] | set[str]
) -> None:
    for key in obj:
        if key in unsupported:
            reason = unsupported[key] if isinstance(unsupported, dict) else f"{key} {_NOT_YET}"
            raise _FieldError(_join(path, key), reason)
        if key not in allowed:
            raise _FieldError(_join(path, str(key)), "unknown field")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class _DocumentParser:
    def __init__(self, context: str) -> None:
        self.context = context
        self.warnings: list[str] = []

    def warn(self, path: str, text: str) -> None:
        self.warnings.append(f"{self.context}: {path}: {text}")

    # -- selectors --
    def selector(self, value: Any, path: str) -> Selector:
        if value is None:
            value = {}
        _expect(value, dict, path, "an object (a label selector)")
        _check_fields(value, path, {"matchLabels", "matchExpressions"}, set())
        labels = value.get("matchLabels") or {}
        _expect(labels, dict, _join(path, "matchLabels"), "an object")
        match_labels: dict[str, str] = {}
        for key, val in labels.items():
            kpath = f"{_join(path, 'matchLabels')}.{key}"
            if not isinstance(key, str) or not key:
                raise _FieldError(kpath, "label keys must be non-empty strings")
            if not isinstance(val, str):
                raise _FieldError(kpath, f"label values must be strings, got {_type_name(val)} {_quote(val)}")
            if len(val) > 63 or not _LABEL_VALUE.match(val):
                raise _FieldError(kpath, f"{_quote(val)} is not a valid label value")
            match_labels[key] = val
        exprs = value.get("matchExpressions") or []
        _expect(exprs, list, _join(path, "matchExpressions"), "a list")
        parsed = []
        for i, expr in enumerate(exprs):
            epath = f"{_join(path, 'matchExpressions')}[{i}]"
            _expect(expr, dict, epath, "an object")
            _check_fields(expr, epath, {"key", "operator", "values"}, set())
            key, op, vals = expr.get("key"), expr.get("operator"), expr.get("values")
            if not isinstance(key, str) or not key:
                raise _FieldError(_join(epath, "key"), "is required and must be a non-empty string")
            if op not in OPERATORS:
                raise _FieldError(
                    _join(epath, "operator"),
                    f"{_quote(op)} is not a valid operator (In, NotIn, Exists, DoesNotExist)",
                )
            if op in ("In", "NotIn"):
                if not isinstance(vals, list) or not vals:
                    raise _FieldError(_join(epath, "values"), f"must be a non-empty list for operator {op}")
                for j, v in enumerate(vals):
                    if not isinstance(v, str):
                        raise _FieldError(
                            f"{_join(epath, 'values')}[{j}]", f"must be a string, got {_type_name(v)}"
                        )
            elif vals:
                raise _FieldError(_join(epath, "values"), f"must be empty for operator {op}")
            parsed.append((key, op, list(vals or [])))
        reqs = [requirement(k, "In", [v]) for k, v in match_labels.items()]
        reqs += [requirement(k, op, vals) for k, op, vals in parsed]
        return Selector(tuple(reqs))

    # -- ports --
    def port_rules(self, value: Any, path: str) -> tuple[tuple[int, str], ...]:
        _expect(value, list, path, "a list")
        out: list[tuple[int, str]] = []
        for i, item in enumerate(value):
            ipath = f"{path}[{i}]"
            _expect(item, dict, ipath, "an object")
            _check_fields(item, ipath, _PORT_RULE_FIELDS, _UNSUPPORTED_PORT_RULE)
            ports = item.get("ports")
            if ports is None:
                ports = []
            _expect(ports, list, _join(ipath, "ports"), "a list")
            for j, port in enumerate(ports):
                out.append(self.port_protocol(port, f"{_join(ipath, 'ports')}[{j}]"))
            if not ports:
                out.append((0, "ANY"))
            if "rules" in item:
                self.l7_rules(item["rules"], _join(ipath, "rules"), ports)
        return tuple(out)

    def port_protocol(self, value: Any, path: str) -> tuple[int, str]:
        _expect(value, dict, path, "an object")
        _check_fields(value, path, {"port", "protocol"}, {"endPort": f"endPort (port ranges) {_NOT_YET}"})
        raw = value.get("port", "0")
        if isinstance(raw, bool) or not isinstance(raw, str | int):
            raise _FieldError(_join(path, "port"), f"must be a string or a number, got {_type_name(raw)}")
        text = str(raw).strip()
        if text.isdigit():
            number = int(text)
            if number > 65535:
                raise _FieldError(_join(path, "port"), f"{_quote(raw)} is not a valid port")
        elif re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", text) and len(text) <= 15 and not text.isdigit():
            raise _FieldError(_join(path, "port"), f"{_quote(raw)}: named ports are not supported yet")
        else:
            raise _FieldError(_join(path, "port"), f"{_quote(raw)} is not a valid port")
        proto = value.get("protocol", "ANY")
        if not isinstance(proto, str) or proto.upper() not in (*PROTOCOLS, "ANY"):
            raise _FieldError(
                _join(path, "protocol"), f"{_quote(proto)} is not a valid protocol (TCP, UDP, SCTP, ANY)"
            )
        return number, proto.upper()

    def l7_rules(self, value: Any, path: str, ports: list) -> None:
        _expect(value, dict, path, "an object")
        for key in value:
            if key not in _L7_KINDS:
                raise _FieldError(_join(path, str(key)), "unknown field")
        kinds = ", ".join(sorted(value))
        where = ", ".join(f"{p.get('port', '0')}/{p.get('protocol', 'ANY')}" for p in ports) or "all ports"
        self.warn(
            path, f"L7 rules ({kinds}) are not enforced by the L3/L4 datapath; {where} allowed at L4 only"
        )

    # -- ingress / egress --
    def peer_rules(self, value: Any, path: str, direction: str) -> tuple[PeerRule, ...]:
        _expect(value, list, path, "a list")
        allowed = _INGRESS_FIELDS if direction == "ingress" else _EGRESS_FIELDS
        out = []
        for i, rule in enumerate(value):
            rpath = f"{path}[{i}]"
            if rule is None:
                rule = {}
            _expect(rule, dict, rpath, "an object")
            unsupported = {k: f"{k} {_NOT_YET}" for k in _UNSUPPORTED_PEER}
            if direction == "ingress":
                unsupported["toFQDNs"] = "toFQDNs is only valid in egress rules"
            _check_fields(rule, rpath, allowed, unsupported)
            ep_key = "fromEndpoints" if direction == "ingress" else "toEndpoints"
            ent_key = "fromEntities" if direction == "ingress" else "toEntities"
            selectors = None
            if ep_key in rule:
                items = rule[ep_key]
                _expect(items, list, _join(rpath, ep_key), "a list")
                selectors = tuple(
                    self.selector(s, f"{_join(rpath, ep_key)}[{j}]") for j, s in enumerate(items)
                )
            entities = None
            if ent_key in rule:
                items = rule[ent_key]
                _expect(items, list, _join(rpath, ent_key), "a list")
                for j, name in enumerate(items):
                    if name not in ENTITIES:
                        raise _FieldError(
                            f"{_join(rpath, ent_key)}[{j}]",
                            f"{_quote(name)} is not a known entity ({', '.join(ENTITIES)})",
                        )
                entities = tuple(items)
            if "toFQDNs" in rule:
                fq = rule["toFQDNs"]
                _expect(fq, list, _join(rpath, "toFQDNs"), "a list")
                for j, item in enumerate(fq):
                    fpath = f"{_join(rpath, 'toFQDNs')}[{j}]"
                    _expect(item, dict, fpath, "an object")
                    _check_fields(item, fpath, {"matchName", "matchPattern"}, set())
                self.warn(
                    _join(rpath, "toFQDNs"),
                    "toFQDNs is not enforced by the L3/L4 datapath; this peer allows nothing (fails closed)",
                )
            ports = self.port_rules(rule["toPorts"], _join(rpath, "toPorts")) if "toPorts" in rule else None
            has_peer = any(k in rule for k in (ep_key, ent_key, "toFQDNs"))
            out.append(PeerRule(selectors, entities, ports, has_peer, i))
        return tuple(out)

    def spec_rule(self, value: Any, path: str, spec_index: int) -> SpecRule:
        _expect(value, dict, path, "an object")
        _check_fields(value, path, _RULE_FIELDS, _UNSUPPORTED_RULE)
        if "endpointSelector" not in value:
            raise _FieldError(_join(path, "endpointSelector"), "is required")
        selector = self.selector(value["endpointSelector"], _join(path, "endpointSelector"))
        ingress = (
            self.peer_rules(value["ingress"], _join(path, "ingress"), "ingress")
            if value.get("ingress") is not None
            else None
        )
        egress = (
            self.peer_rules(value["egress"], _join(path, "egress"), "egress")
            if value.get("egress") is not None
            else None
        )
        dd_in = dd_eg = True
        if "enableDefaultDeny" in value:
            dd = value["enableDefaultDeny"]
            dpath = _join(path, "enableDefaultDeny")
            _expect(dd, dict, dpath, "an object")
            _check_fields(dd, dpath, {"ingress", "egress"}, set())
            for key in dd:
                _expect(dd[key], bool, _join(dpath, key), "a boolean")
            dd_in, dd_eg = dd.get("ingress", True), dd.get("egress", True)
        if "description" in value:
            _expect(value["description"], str, _join(path, "description"), "a string")
        if "labels" in value:
            _expect(value["labels"], list, _join(path, "labels"), "a list")
        return SpecRule(selector, ingress, egress, dd_in, dd_eg, spec_index)


def _context(filename: str, index: int, doc: Any) -> str:
    name = ns = None
    if isinstance(doc, dict) and isinstance(doc.get("metadata"), dict):
        name, ns = doc["metadata"].get("name"), doc["metadata"].get("namespace")
    label = ""
    if name:
        label = f" ({ns}/{name})" if ns and doc.get("kind") != CCNP else f" ({name})"
    return f"policy file {filename}, document {index}{label}"


def parse_document(doc: Any, filename: str, index: int) -> Policy:
    """Validates one YAML document; raises PolicyError."""
    context = _context(filename, index, doc)
    parser = _DocumentParser(context)
    try:
        _expect(doc, dict, "", "an object")
        kind = doc.get("kind")
        if kind not in (CNP, CCNP):
            if kind == "NetworkPolicy":
                raise _FieldError("kind", "Kubernetes NetworkPolicy is not supported yet")
            raise _FieldError("kind", f"{_quote(kind)} is not a supported kind ({CNP}, {CCNP})")
        _check_fields(doc, "", {"apiVersion", "kind", "metadata", "spec", "specs", "status"}, set())
        if doc.get("apiVersion") != "cilium.io/v2":
            raise _FieldError(
                "apiVersion", f"{_quote(doc.get('apiVersion'))} is not supported (cilium.io/v2)"
            )
        meta = doc.get("metadata")
        _expect(meta, dict, "metadata", "an object")
        name = meta.get("name")
        if not isinstance(name, str) or not name:
            raise _FieldError("metadata.name", "is required")
        namespace = meta.get("namespace")
        if kind == CCNP and namespace:
            raise _FieldError("metadata.namespace", "must not be set for a CiliumClusterwideNetworkPolicy")
        if kind == CNP:
            namespace = namespace or "default"
            _expect(namespace, str, "metadata.namespace", "a string")
        labels = meta.get("labels") or {}
        _expect(labels, dict, "metadata.labels", "an object")
        if "spec" not in doc and "specs" not in doc:
            raise _FieldError("spec", "is required (spec or specs)")
        specs = []
        if "spec" in doc:
            specs.append(parser.spec_rule(doc["spec"], "spec", 0))
        if "specs" in doc:
            _expect(doc["specs"], list, "specs", "a list")
            specs += [parser.spec_rule(s, f"specs[{i}]", i + 1) for i, s in enumerate(doc["specs"])]
    except _FieldError as exc:
        raise PolicyError(f"{context}: {exc}") from None
    ref = PolicyRef(kind, namespace or "", name)
    return Policy(
        ref,
        specs,
        f"{filename}, document {index}",
        parser.warnings,
        {str(k): str(v) for k, v in labels.items()},
        doc,
    )


def parse_policies(text: str, filename: str = "<input>") -> list[Policy]:
    """All policies of a YAML stream; raises PolicyError for the first bad document (nothing returned)."""
    try:
        docs = list(yaml.load_all(text, Loader=_LOADER))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise PolicyError(f"policy file {filename}: invalid YAML{where}: {problem}") from None
    policies: list[Policy] = []
    seen: dict[PolicyRef, int] = {}
    for index, doc in enumerate(docs, 1):
        if doc is None:
            continue
        policy = parse_document(doc, filename, index)
        if policy.ref in seen:
            raise PolicyError(
                f"{_context(filename, index, doc)}: metadata.name: {policy.ref} is already defined "
                f"in document {seen[policy.ref]}"
            )
        seen[policy.ref] = index
        policies.append(policy)
    if not policies:
        raise PolicyError(f"policy file {filename}: no policy found")
    return policies


def load_policy_file(path: str | Path) -> list[Policy]:
    """Reads and validates a policy file (several documents allowed)."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise PolicyError(f"policy file {path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise PolicyError(f"policy file {path}: not UTF-8 text") from None
    return parse_policies(text, str(path))
