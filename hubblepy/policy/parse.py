"""CiliumNetworkPolicy / CiliumClusterwideNetworkPolicy / NetworkPolicy YAML -> validated :class:`Policy`.

Every document of a file is validated before anything is returned; the first problem raises
:class:`PolicyError` naming the file, the document (1-based index and namespace/name), the field path
and the reason, so a bad file is rejected whole.

Per-field choices (docs/policy/*.md):

* enforced: endpointSelector, ingress/egress, ingressDeny/egressDeny, fromEndpoints/toEndpoints,
  fromEntities/toEntities, fromCIDR/toCIDR, fromCIDRSet/toCIDRSet (with ``except``),
  toPorts.ports (port, endPort, named ports, protocol TCP/UDP/SCTP/ANY), enableDefaultDeny, labels,
  description; networking.k8s.io/v1 NetworkPolicy (podSelector, namespaceSelector, ipBlock,
  ports with endPort and names, policyTypes);
* enforced through the node's HTTP proxy: ``toPorts[].rules.http`` (Cilium's ``PortRuleHTTP``:
  method, path, host, headers, headerMatches; :mod:`.l7`), on TCP ports (``protocol: ANY`` gives the
  TCP entry only), ingress and egress;
* enforced through the node's DNS proxy: ``toPorts[].rules.dns`` (Cilium's ``PortRuleDNS``:
  matchName, matchPattern; :mod:`.dns`), on UDP and TCP ports (``protocol: ANY`` gives both), egress;
* enforced through the DNS answers the node learns (:mod:`hubblepy.fqdn`): ``toFQDNs``
  (``matchName``/``matchPattern``) selects the IPs of matching names in the FQDN cache;
* loaded with a warning, not enforced: ``nodeSelector`` (host policies: the lab has no host endpoint,
  so the rule selects no pod);
* rejected as not supported yet: services/groups/nodes/requires peers,
  cidrGroupRef, icmps, authentication, TLS options, log, L7 ``kafka``, ``l7proto``/``l7`` rules,
  header secrets, L7 rules on port ranges or on every port;
* rejected as unknown: any other field.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hubblepy.fqdn.matcher import FQDNSelector
from hubblepy.policy.dns import DNSRule
from hubblepy.policy.errors import PolicyError
from hubblepy.policy.l7 import MISMATCH_ACTIONS, HeaderMatch, HTTPRule, RegexError, compile_regex
from hubblepy.policy.labels import NAMESPACE_KEY, NAMESPACE_LABEL_PREFIX
from hubblepy.policy.model import (
    CCNP,
    CNP,
    NETWORK_POLICY,
    PROTOCOLS,
    CIDRRule,
    PeerRule,
    Policy,
    PolicyRef,
    PortRule,
    SpecRule,
)
from hubblepy.policy.selector import OPERATORS, Requirement, Selector, requirement
from hubblepy.policy.validate import FieldProblem, check_document, check_fqdn_selector
from hubblepy.policy.yamlsafe import YAMLInputError, load_documents, read_text

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
    "log": f"log {_NOT_YET}",
}
# what a nodeSelector rule selects among pods: nothing (pods never carry reserved:host)
_NO_POD = Selector((Requirement("reserved", "host", "Exists"),))
_INGRESS_FIELDS = {"fromEndpoints", "fromEntities", "fromCIDR", "fromCIDRSet", "toPorts"}
_EGRESS_FIELDS = {"toEndpoints", "toEntities", "toCIDR", "toCIDRSet", "toPorts", "toFQDNs"}
_UNSUPPORTED_PEER = {
    "fromRequires",
    "fromGroups",
    "fromNodes",
    "toRequires",
    "toGroups",
    "toNodes",
    "toServices",
    "icmps",
    "authentication",
}
_CIDR_SET_FIELDS = {"cidr", "except"}
_UNSUPPORTED_CIDR_SET = {"cidrGroupRef", "cidrGroupSelector"}
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_PORT_RULE_FIELDS = {"ports", "rules"}
_UNSUPPORTED_PORT_RULE = {"terminatingTLS", "originatingTLS", "serverNames", "listener"}
_L7_KINDS = {"http", "kafka", "dns", "l7proto", "l7"}
_UNSUPPORTED_L7 = {
    "kafka": f"Kafka rules are {_NOT_YET[3:]} (L7 rules: http, dns)",
    "l7proto": f"generic L7 rules (l7proto) are {_NOT_YET[3:]} (L7 rules: http, dns)",
    "l7": f"generic L7 rules (l7) are {_NOT_YET[3:]} (L7 rules: http, dns)",
}
_HTTP_FIELDS = {"method", "path", "host", "headers", "headerMatches"}
_DNS_FIELDS = {"matchName", "matchPattern"}
_HEADER_MATCH_FIELDS = {"name", "value", "mismatch", "secret"}


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
    def port_rules(self, value: Any, path: str, deny: bool = False) -> tuple[PortRule, ...]:
        _expect(value, list, path, "a list")
        out: list[PortRule] = []
        for i, item in enumerate(value):
            ipath = f"{path}[{i}]"
            _expect(item, dict, ipath, "an object")
            if deny and "rules" in item:
                raise _FieldError(_join(ipath, "rules"), "L7 rules are not allowed in deny rules")
            _check_fields(item, ipath, _PORT_RULE_FIELDS, _UNSUPPORTED_PORT_RULE)
            ports = item.get("ports")
            if ports is None:
                ports = []
            _expect(ports, list, _join(ipath, "ports"), "a list")
            parsed = [
                self.port_protocol(port, f"{_join(ipath, 'ports')}[{j}]") for j, port in enumerate(ports)
            ]
            if not parsed:
                parsed.append(PortRule(0, "ANY"))
            http = None
            if "rules" in item:
                if isinstance(item["rules"], dict) and item["rules"].get("dns") is not None:
                    dns = self.dns_rules(item["rules"], _join(ipath, "rules"), parsed)
                    if dns is not None:
                        # DNS over UDP and TCP: protocol ANY gives both (never SCTP)
                        parsed = [
                            p._replace(protocol=proto, dns=dns)
                            for p in parsed
                            for proto in (("UDP", "TCP") if p.protocol == "ANY" else (p.protocol,))
                        ]
                    out += parsed
                    continue
                http = self.l7_rules(item["rules"], _join(ipath, "rules"), ports, parsed)
            if http is not None:
                # HTTP needs TCP: protocol ANY gives the TCP entry only (never UDP/SCTP at L4)
                parsed = [p._replace(protocol="TCP", http=http) for p in parsed]
            out += parsed
        return tuple(out)

    def port_protocol(
        self, value: Any, path: str, default_protocol: str = "ANY", port_required: bool = False
    ) -> PortRule:
        _expect(value, dict, path, "an object")
        _check_fields(value, path, {"port", "protocol", "endPort"}, set())
        if port_required and "port" not in value and "endPort" not in value:
            raw: Any = 0
        else:
            raw = value.get("port", "0")
        if isinstance(raw, bool) or not isinstance(raw, str | int):
            raise _FieldError(_join(path, "port"), f"must be a string or a number, got {_type_name(raw)}")
        text = str(raw).strip()
        name = ""
        number = 0
        if text.isdigit():
            number = int(text)
            if number > 65535:
                raise _FieldError(_join(path, "port"), f"{_quote(raw)} is not a valid port")
        elif _PORT_NAME.match(text) and len(text) <= 15 and any(c.isalpha() for c in text):
            name = text
        else:
            raise _FieldError(_join(path, "port"), f"{_quote(raw)} is not a valid port")
        end = 0
        if "endPort" in value:
            epath = _join(path, "endPort")
            raw_end = value["endPort"]
            _expect(raw_end, int, epath, "a number")
            if not 0 <= raw_end <= 65535:
                raise _FieldError(epath, f"{raw_end} is not a valid port")
            if name:
                raise _FieldError(epath, "cannot be used with a named port")
            if number == 0 and raw_end:
                raise _FieldError(epath, "needs a port (the start of the range)")
            if raw_end and raw_end < number:
                raise _FieldError(epath, f"{raw_end} is smaller than port {number}")
            end = raw_end if raw_end > number else 0
        proto = value.get("protocol", default_protocol)
        if not isinstance(proto, str) or proto.upper() not in (*PROTOCOLS, "ANY"):
            raise _FieldError(
                _join(path, "protocol"), f"{_quote(proto)} is not a valid protocol (TCP, UDP, SCTP, ANY)"
            )
        return PortRule(number, proto.upper(), end, name)

    # -- CIDR --
    def cidr(self, value: Any, path: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        if not isinstance(value, str):
            raise _FieldError(path, f"must be a CIDR string, got {_type_name(value)}")
        try:
            return ipaddress.ip_network(value.strip(), strict=False)
        except ValueError:
            raise _FieldError(path, f"{_quote(value)} is not a valid CIDR") from None

    def cidr_rule(self, cidr_value: Any, excepts: Any, path: str, except_path: str) -> CIDRRule:
        net = self.cidr(cidr_value, path)
        holes = []
        if excepts is not None:
            _expect(excepts, list, except_path, "a list")
            for k, item in enumerate(excepts):
                hole = self.cidr(item, f"{except_path}[{k}]")
                if hole.version != net.version or not hole.subnet_of(net):  # type: ignore[arg-type]
                    raise _FieldError(f"{except_path}[{k}]", f"{_quote(item)} is not inside {net}")
                holes.append(str(hole))
        return CIDRRule(str(net), tuple(holes))

    def cidr_peers(self, rule: dict, rpath: str, plain_key: str, set_key: str) -> tuple[CIDRRule, ...] | None:
        if plain_key not in rule and set_key not in rule:
            return None
        out: list[CIDRRule] = []
        if plain_key in rule:
            items = rule[plain_key]
            _expect(items, list, _join(rpath, plain_key), "a list")
            for j, item in enumerate(items):
                out.append(self.cidr_rule(item, None, f"{_join(rpath, plain_key)}[{j}]", ""))
        if set_key in rule:
            items = rule[set_key]
            _expect(items, list, _join(rpath, set_key), "a list")
            for j, item in enumerate(items):
                spath = f"{_join(rpath, set_key)}[{j}]"
                _expect(item, dict, spath, "an object")
                _check_fields(
                    item,
                    spath,
                    _CIDR_SET_FIELDS,
                    {k: f"{k} (CIDR groups) {_NOT_YET}" for k in _UNSUPPORTED_CIDR_SET},
                )
                if "cidr" not in item:
                    raise _FieldError(_join(spath, "cidr"), "is required")
                out.append(
                    self.cidr_rule(
                        item["cidr"], item.get("except"), _join(spath, "cidr"), _join(spath, "except")
                    )
                )
        return tuple(out)

    def l7_rules(
        self, value: Any, path: str, ports: list, parsed: list[PortRule]
    ) -> tuple[HTTPRule, ...] | None:
        """``toPorts[].rules``: the HTTP rules (None when there are none), or a field error."""
        _expect(value, dict, path, "an object")
        for key in value:
            if key not in _L7_KINDS:
                raise _FieldError(_join(path, str(key)), "unknown field")
            if key in _UNSUPPORTED_L7:
                raise _FieldError(_join(path, key), _UNSUPPORTED_L7[key])
        kinds = sorted(k for k in value if value[k] is not None)
        if len(kinds) > 1:
            raise _FieldError(path, f"only one L7 rule type per port is allowed, got {', '.join(kinds)}")
        raw = value.get("http")
        if raw is None:
            return None
        hpath = _join(path, "http")
        _expect(raw, list, hpath, "a list")
        if not raw:  # as Cilium: an empty list is no L7 rule at all (plain L4)
            return None
        for j, port in enumerate(parsed):
            ppath = f"{path[: -len('.rules')]}.ports[{j}]" if ports else path[: -len(".rules")]
            if port.port == 0 and not port.name:
                raise _FieldError(ppath, "L7 rules need a port (not every port)")
            if port.end_port:
                raise _FieldError(_join(ppath, "endPort"), f"L7 rules on port ranges are {_NOT_YET[3:]}")
            if port.protocol not in ("TCP", "ANY"):
                raise _FieldError(
                    _join(ppath, "protocol"), f'HTTP rules need protocol TCP, got "{port.protocol}"'
                )
        return tuple(self.http_rule(r, f"{hpath}[{k}]") for k, r in enumerate(raw))

    def dns_rules(self, value: dict, path: str, parsed: list[PortRule]) -> tuple[DNSRule, ...] | None:
        """``toPorts[].rules`` with ``dns``: the DNS rules (None for an empty list: plain L4).

        Selector syntax, ports (53, no range, not every port) and direction are checked with Cilium's
        sanitisation in :mod:`.validate` once the document is parsed.
        """
        for key in value:
            if key not in _L7_KINDS:
                raise _FieldError(_join(path, str(key)), "unknown field")
        kinds = sorted(k for k in value if value[k] is not None)
        if len(kinds) > 1:
            raise _FieldError(path, f"only one L7 rule type per port is allowed, got {', '.join(kinds)}")
        dpath = _join(path, "dns")
        raw = value["dns"]
        _expect(raw, list, dpath, "a list")
        if not raw:  # as for http: an empty list is no L7 rule at all
            return None
        for j, port in enumerate(parsed):
            if port.protocol not in ("UDP", "TCP", "ANY"):
                raise _FieldError(
                    f"{path[: -len('.rules')]}.ports[{j}].protocol",
                    f'DNS rules need protocol UDP, TCP or ANY, got "{port.protocol}"',
                )
        out = []
        for k, item in enumerate(raw):
            ipath = f"{dpath}[{k}]"
            _expect(item, dict, ipath, "an object")
            _check_fields(item, ipath, _DNS_FIELDS, set())
            name, pattern = item.get("matchName"), item.get("matchPattern")
            out.append(
                DNSRule(name if isinstance(name, str) else "", pattern if isinstance(pattern, str) else "")
            )
        return tuple(out)

    def http_rule(self, value: Any, path: str) -> HTTPRule:
        if value is None:
            value = {}
        _expect(value, dict, path, "an object")
        _check_fields(value, path, _HTTP_FIELDS, set())
        fields: dict[str, str] = {}
        for key in ("method", "path", "host"):
            text = value.get(key)
            if text is None:
                continue
            _expect(text, str, _join(path, key), "a string (a regular expression)")
            try:
                compile_regex(text)
            except RegexError as exc:
                raise _FieldError(_join(path, key), str(exc)) from None
            fields[key] = text
        headers: list[HeaderMatch] = []
        if value.get("headers") is not None:
            hpath = _join(path, "headers")
            _expect(value["headers"], list, hpath, "a list")
            for k, item in enumerate(value["headers"]):
                ipath = f"{hpath}[{k}]"
                _expect(item, str, ipath, 'a string ("Name" or "Name: value")')
                name, sep, rest = item.strip().partition(":")
                if not sep and " " in name:  # Cilium's "Name value" form
                    name, _, rest = name.partition(" ")
                name, rest = name.strip(), rest.strip()
                if not name or not _HEADER_NAME.match(name):
                    raise _FieldError(
                        ipath, f'{_quote(item)} is not a valid header ("Name" or "Name: value")'
                    )
                headers.append(HeaderMatch(name, rest))
        if value.get("headerMatches") is not None:
            mpath = _join(path, "headerMatches")
            _expect(value["headerMatches"], list, mpath, "a list")
            for k, item in enumerate(value["headerMatches"]):
                ipath = f"{mpath}[{k}]"
                _expect(item, dict, ipath, "an object")
                _check_fields(item, ipath, _HEADER_MATCH_FIELDS, set())
                if "secret" in item:
                    raise _FieldError(
                        _join(ipath, "secret"), "secret references are not supported (use a literal value)"
                    )
                name = item.get("name")
                if not isinstance(name, str) or not _HEADER_NAME.match(name):
                    raise _FieldError(_join(ipath, "name"), "is required and must be a header name")
                val = item.get("value", "")
                _expect(val, str, _join(ipath, "value"), "a string")
                mismatch = item.get("mismatch", "")
                if mismatch:
                    if mismatch not in MISMATCH_ACTIONS:
                        raise _FieldError(
                            _join(ipath, "mismatch"),
                            f"{_quote(mismatch)} is not a mismatch action ({', '.join(MISMATCH_ACTIONS)})",
                        )
                    if mismatch in ("ADD", "REPLACE") and not val:
                        raise _FieldError(_join(ipath, "value"), f"is required with mismatch {mismatch}")
                headers.append(HeaderMatch(name, val, mismatch))
        return HTTPRule(
            fields.get("method", ""), fields.get("path", ""), fields.get("host", ""), tuple(headers)
        )

    # -- ingress / egress --
    def peer_rules(self, value: Any, path: str, direction: str, deny: bool = False) -> tuple[PeerRule, ...]:
        _expect(value, list, path, "a list")
        allowed = set(_INGRESS_FIELDS if direction == "ingress" else _EGRESS_FIELDS)
        if deny:
            allowed.discard("toFQDNs")
        out = []
        for i, rule in enumerate(value):
            rpath = f"{path}[{i}]"
            if rule is None:
                rule = {}
            _expect(rule, dict, rpath, "an object")
            unsupported = {k: f"{k} {_NOT_YET}" for k in _UNSUPPORTED_PEER}
            if direction == "ingress":
                unsupported["toFQDNs"] = "toFQDNs is only valid in egress rules"
            elif deny:
                unsupported["toFQDNs"] = "toFQDNs is not valid in egressDeny rules"
            _check_fields(rule, rpath, allowed, unsupported)
            ingress = direction == "ingress"
            ep_key = "fromEndpoints" if ingress else "toEndpoints"
            ent_key = "fromEntities" if ingress else "toEntities"
            cidr_key, set_key = ("fromCIDR", "fromCIDRSet") if ingress else ("toCIDR", "toCIDRSet")
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
            cidrs = self.cidr_peers(rule, rpath, cidr_key, set_key)
            if "toFQDNs" in rule:
                fq = rule["toFQDNs"]
                _expect(fq, list, _join(rpath, "toFQDNs"), "a list")
                for j, item in enumerate(fq):
                    fpath = f"{_join(rpath, 'toFQDNs')}[{j}]"
                    _expect(item, dict, fpath, "an object")
                    _check_fields(item, fpath, {"matchName", "matchPattern"}, set())
                    check_fqdn_selector(item, fpath)  # exactly one, a valid name or pattern
                fqdns = tuple(dict.fromkeys(FQDNSelector.from_dict(item) for item in fq))
            else:
                fqdns = None
            ports = (
                self.port_rules(rule["toPorts"], _join(rpath, "toPorts"), deny) if "toPorts" in rule else None
            )
            has_peer = any(k in rule for k in (ep_key, ent_key, cidr_key, set_key, "toFQDNs"))
            out.append(PeerRule(selectors, entities, ports, has_peer, i, cidrs, fqdns))
        return tuple(out)

    def spec_rule(self, value: Any, path: str, spec_index: int) -> SpecRule:
        _expect(value, dict, path, "an object")
        _check_fields(value, path, _RULE_FIELDS, _UNSUPPORTED_RULE)
        if "nodeSelector" in value:
            if "endpointSelector" in value:
                raise _FieldError(_join(path, "nodeSelector"), "cannot be combined with endpointSelector")
            self.selector(value["nodeSelector"], _join(path, "nodeSelector"))
            self.warn(
                _join(path, "nodeSelector"),
                "host policies are not enforced (the lab has no host endpoint); this rule selects no pod",
            )
            selector = _NO_POD
        elif "endpointSelector" not in value:
            raise _FieldError(_join(path, "endpointSelector"), "is required")
        else:
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
        ingress_deny = (
            self.peer_rules(value["ingressDeny"], _join(path, "ingressDeny"), "ingress", deny=True)
            if value.get("ingressDeny") is not None
            else None
        )
        egress_deny = (
            self.peer_rules(value["egressDeny"], _join(path, "egressDeny"), "egress", deny=True)
            if value.get("egressDeny") is not None
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
        return SpecRule(selector, ingress, egress, dd_in, dd_eg, spec_index, ingress_deny, egress_deny)

    # -- networking.k8s.io/v1 NetworkPolicy --
    def network_policy(self, spec: Any, namespace: str) -> SpecRule:
        _expect(spec, dict, "spec", "an object")
        _check_fields(spec, "spec", {"podSelector", "policyTypes", "ingress", "egress"}, set())
        if "podSelector" not in spec:
            raise _FieldError("spec.podSelector", "is required")
        in_namespace = Requirement("k8s", NAMESPACE_KEY, "In", frozenset({namespace}))
        pods = self.selector(spec["podSelector"], "spec.podSelector").with_requirement(in_namespace)
        if "policyTypes" in spec:
            types = spec["policyTypes"]
            _expect(types, list, "spec.policyTypes", "a list")
            for i, t in enumerate(types):
                if t not in ("Ingress", "Egress"):
                    raise _FieldError(f"spec.policyTypes[{i}]", f"{_quote(t)} is not Ingress or Egress")
        else:
            types = ["Ingress"] + (["Egress"] if spec.get("egress") is not None else [])
        rules: dict[str, tuple[PeerRule, ...] | None] = {}
        for direction, peer_key in (("ingress", "from"), ("egress", "to")):
            raw = spec.get(direction)
            if raw is None:
                raw = []
            _expect(raw, list, f"spec.{direction}", "a list")
            parsed = tuple(
                self.np_rule(r, f"spec.{direction}[{i}]", peer_key, namespace, i) for i, r in enumerate(raw)
            )
            rules[direction] = parsed if direction.capitalize() in types else None
        return SpecRule(
            pods,
            rules["ingress"] or None,
            rules["egress"] or None,
            True,
            True,
            0,
            isolate_ingress="Ingress" in types,
            isolate_egress="Egress" in types,
        )

    def np_rule(self, value: Any, path: str, peer_key: str, namespace: str, index: int) -> PeerRule:
        if value is None:
            value = {}
        _expect(value, dict, path, "an object")
        _check_fields(value, path, {peer_key, "ports"}, set())
        peers = value.get(peer_key) or []
        _expect(peers, list, _join(path, peer_key), "a list")
        selectors: list[Selector] = []
        cidrs: list[CIDRRule] = []
        for j, peer in enumerate(peers):
            ppath = f"{_join(path, peer_key)}[{j}]"
            _expect(peer, dict, ppath, "an object")
            _check_fields(peer, ppath, {"podSelector", "namespaceSelector", "ipBlock"}, set())
            if not peer:
                raise _FieldError(ppath, "needs podSelector, namespaceSelector or ipBlock")
            if "ipBlock" in peer:
                if len(peer) > 1:
                    raise _FieldError(
                        ppath, "ipBlock cannot be combined with podSelector or namespaceSelector"
                    )
                block = peer["ipBlock"]
                bpath = _join(ppath, "ipBlock")
                _expect(block, dict, bpath, "an object")
                _check_fields(block, bpath, {"cidr", "except"}, set())
                if "cidr" not in block:
                    raise _FieldError(_join(bpath, "cidr"), "is required")
                cidrs.append(
                    self.cidr_rule(
                        block["cidr"], block.get("except"), _join(bpath, "cidr"), _join(bpath, "except")
                    )
                )
                continue
            reqs: list[Requirement] = []
            if "podSelector" in peer:
                reqs += self.selector(peer["podSelector"], _join(ppath, "podSelector")).requirements
            if "namespaceSelector" in peer:
                ns_sel = self.selector(peer["namespaceSelector"], _join(ppath, "namespaceSelector"))
                reqs += [
                    Requirement("k8s", NAMESPACE_LABEL_PREFIX + r.key, r.operator, r.values)
                    for r in ns_sel.requirements
                ]
                reqs.append(Requirement("k8s", NAMESPACE_KEY, "Exists"))
            else:
                reqs.append(Requirement("k8s", NAMESPACE_KEY, "In", frozenset({namespace})))
            selectors.append(Selector(tuple(reqs)))
        ports: tuple[PortRule, ...] | None = None
        if value.get("ports"):
            _expect(value["ports"], list, _join(path, "ports"), "a list")
            port_list: list[PortRule] = []
            for j, port in enumerate(value["ports"]):
                ppath = f"{_join(path, 'ports')}[{j}]"
                rule = self.port_protocol(port, ppath, default_protocol="TCP", port_required=True)
                if rule.protocol == "ANY":
                    raise _FieldError(_join(ppath, "protocol"), '"ANY" is not valid here (TCP, UDP, SCTP)')
                port_list.append(rule)
            ports = tuple(port_list)
        if not peers:  # no from/to: every peer, inside and outside the cluster
            return PeerRule(None, ("all",), ports, True, index)
        return PeerRule(tuple(selectors) or None, None, ports, True, index, tuple(cidrs) or None)


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
        if kind == NETWORK_POLICY:
            policy = _parse_network_policy(doc, filename, index, context, parser)
            check_document(doc)
            return policy
        if kind not in (CNP, CCNP):
            raise _FieldError(
                "kind", f"{_quote(kind)} is not a supported kind ({CNP}, {CCNP}, {NETWORK_POLICY})"
            )
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
        check_document(doc)  # what the CRD schema and Cilium's sanitisation add to the parser's checks
    except (_FieldError, FieldProblem) as exc:
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


def _parse_network_policy(
    doc: dict, filename: str, index: int, context: str, parser: _DocumentParser
) -> Policy:
    """networking.k8s.io/v1 NetworkPolicy (raises _FieldError; the caller adds the context)."""
    _check_fields(doc, "", {"apiVersion", "kind", "metadata", "spec", "status"}, set())
    if doc.get("apiVersion") != "networking.k8s.io/v1":
        raise _FieldError(
            "apiVersion", f"{_quote(doc.get('apiVersion'))} is not supported (networking.k8s.io/v1)"
        )
    meta: Any = doc.get("metadata")
    _expect(meta, dict, "metadata", "an object")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise _FieldError("metadata.name", "is required")
    namespace = meta.get("namespace") or "default"
    _expect(namespace, str, "metadata.namespace", "a string")
    labels = meta.get("labels") or {}
    _expect(labels, dict, "metadata.labels", "an object")
    if "spec" not in doc:
        raise _FieldError("spec", "is required")
    spec = parser.network_policy(doc["spec"], namespace)
    return Policy(
        PolicyRef(NETWORK_POLICY, namespace, name),
        [spec],
        f"{filename}, document {index}",
        parser.warnings,
        {str(k): str(v) for k, v in labels.items()},
        doc,
    )


def _yaml_message(exc: YAMLInputError) -> str:
    return f"invalid YAML{f' at line {exc.line}' if exc.line else ''}: {exc.reason}"


def check_policies(text: str, filename: str = "<input>") -> tuple[list[Policy], list[str]]:
    """The policies of a YAML stream that load, and every problem (one line per bad document).

    The one code path behind :func:`parse_policies` (the lab), :func:`load_policy_file` (scenarios)
    and ``hubble policy validate``.
    """
    try:
        docs = load_documents(text)
    except YAMLInputError as exc:
        return [], [f"policy file {filename}: {_yaml_message(exc)}"]
    policies: list[Policy] = []
    problems: list[str] = []
    seen: dict[PolicyRef, int] = {}
    for index, doc in enumerate(docs, 1):
        if doc is None:
            continue
        try:
            policy = parse_document(doc, filename, index)
        except PolicyError as exc:
            problems.append(str(exc))
            continue
        if policy.ref in seen:
            problems.append(
                f"{_context(filename, index, doc)}: metadata.name: {policy.ref} is already defined "
                f"in document {seen[policy.ref]}"
            )
            continue
        seen[policy.ref] = index
        policies.append(policy)
    if not policies and not problems:
        problems.append(f"policy file {filename}: no policy found")
    return policies, problems


def parse_policies(text: str, filename: str = "<input>") -> list[Policy]:
    """All policies of a YAML stream; raises PolicyError for the first bad document (nothing returned)."""
    policies, problems = check_policies(text, filename)
    if problems:
        raise PolicyError(problems[0])
    return policies


def read_policy_file(path: str | Path) -> str:
    """A policy file's text (bounded read); raises PolicyError."""
    try:
        return read_text(path)
    except OSError as exc:
        raise PolicyError(f"policy file {path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise PolicyError(f"policy file {path}: not UTF-8 text (byte {exc.start})") from None
    except YAMLInputError as exc:
        raise PolicyError(f"policy file {path}: {_yaml_message(exc)}") from None


def load_policy_file(path: str | Path) -> list[Policy]:
    """Reads and validates a policy file (several documents allowed)."""
    return parse_policies(read_policy_file(path), str(path))
