"""L7 HTTP rules (Cilium's ``PortRuleHTTP``): the model, request matching and the proxy's rule table.

Semantics (docs/policy/l7.md):

* ``method``, ``path`` and ``host`` are extended regular expressions matched against the whole value
  (anchored, as Envoy's ``safe_regex`` full match): the method, the request target's path with its
  query (``:path``), the ``Host`` header (``:authority``, with the port when the client sent one). An
  empty or absent field matches everything.
* ``headers``: ``"Name"`` requires the header to be present, ``"Name: value"`` (or ``Name:value``)
  requires one of its values to be exactly ``value``; names are case-insensitive.
* ``headerMatches``: ``{name, value}`` with a literal value (no value: presence). Without ``mismatch``
  a mismatch fails the rule; with ``mismatch`` the rule still matches and the action is applied to the
  forwarded request: ``LOG`` (only logged), ``ADD`` (adds ``name: value``), ``DELETE`` (removes the
  header), ``REPLACE`` (sets it to ``value``). Mismatches are reported in the access log as
  ``MissingHeaders`` (absent) / ``RejectedHeaders`` (other value).
* Every condition of one rule must hold; the rules of a list are OR-ed, the first matching rule wins.
* ``http: [{}]`` (one empty rule) allows every request, through the proxy.

The compiler (:mod:`.compiler`) records, for every endpoint and direction that has at least one
redirected entry, each allow contribution ``(remote identity, port, protocol) -> rule list or
allow-all`` with the rule it came from. The proxy gets them as JSON (:func:`table_to_json`) and
:class:`L7Table` answers "may this request of remote identity R to port P pass, and which rules say
so": the union of every contribution that matches at L3/L4 (any identity or R; any port or P), an
L4-only allow for the same peer making the rule set allow-all, as Cilium merges them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

MISMATCH_ACTIONS = ("LOG", "ADD", "DELETE", "REPLACE")
HTTP_PROXY_PORT = 15001  # the lab's default HTTP proxy port (docs/lab.md)
DNS_PROXY_PORT = 15053  # the lab's DNS proxy port, UDP and TCP (hubblepy.policy.dns)

# what RE2 (Envoy's regex engine) refuses and Python would accept: fail at load time, not at request time
_NOT_RE2 = re.compile(r"\(\?[=!<]|\(\?P[=>]|\\[1-9]|\(\?[aiLmsux-]+\)")


class RegexError(ValueError):
    """A rule's regular expression that cannot be used."""


def compile_regex(text: str) -> re.Pattern[str]:
    """Compiles a rule's regex (raises RegexError with a one-line reason)."""
    if _NOT_RE2.search(text):
        raise RegexError(f"{text!r} uses look-around, back-references or inline flags (not RE2)")
    try:
        return re.compile(text)
    except re.error as exc:
        raise RegexError(f"{text!r} is not a valid regular expression: {exc.msg}") from None


@dataclass(frozen=True)
class HeaderMatch:
    """One required header: ``value`` '' means presence; ``mismatch`` '' means the rule fails."""

    name: str
    value: str = ""
    mismatch: str = ""


@dataclass(frozen=True)
class HTTPRule:
    method: str = ""
    path: str = ""
    host: str = ""
    headers: tuple[HeaderMatch, ...] = ()
    _compiled: Any = field(default=None, compare=False, hash=False, repr=False)

    def patterns(self) -> tuple[re.Pattern[str] | None, ...]:
        if self._compiled is None:
            compiled = tuple(compile_regex(x) if x else None for x in (self.method, self.path, self.host))
            object.__setattr__(self, "_compiled", compiled)
        return self._compiled

    def to_json(self) -> dict:
        out: dict[str, Any] = {}
        for key in ("method", "path", "host"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        if self.headers:
            out["headers"] = [
                {k: v for k, v in (("name", h.name), ("value", h.value), ("mismatch", h.mismatch)) if v}
                for h in self.headers
            ]
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> HTTPRule:
        return cls(
            obj.get("method", ""),
            obj.get("path", ""),
            obj.get("host", ""),
            tuple(
                HeaderMatch(h["name"], h.get("value", ""), h.get("mismatch", ""))
                for h in obj.get("headers", ())
            ),
        )


class Request(NamedTuple):
    """What a rule looks at: method, ``:path`` (path + query), ``:authority`` and the headers."""

    method: str
    path: str
    host: str
    headers: Sequence[tuple[str, str]]  # (name, value) as received, in order


@dataclass
class RuleResult:
    """A matching rule and what its header mismatch actions do to the forwarded request."""

    rule: HTTPRule
    add: list[tuple[str, str]] = field(default_factory=list)  # headers to add
    remove: set[str] = field(default_factory=set)  # lower-case names to remove (before adding)
    missing: list[tuple[str, str]] = field(default_factory=list)  # for the access log
    rejected: list[tuple[str, str]] = field(default_factory=list)


def match_rule(rule: HTTPRule, request: Request) -> RuleResult | None:
    """The rule's result when it allows ``request``, else None."""
    method, path, host = rule.patterns()
    if method is not None and not method.fullmatch(request.method):
        return None
    if path is not None and not path.fullmatch(request.path):
        return None
    if host is not None and not host.fullmatch(request.host):
        return None
    result = RuleResult(rule)
    for header in rule.headers:
        wanted = header.name.lower()
        values = [v for k, v in request.headers if k.lower() == wanted]
        if values and (not header.value or header.value in values or ",".join(values) == header.value):
            continue
        if not header.mismatch:
            return None
        if values:
            result.rejected.append((header.name, ",".join(values)))
        else:
            result.missing.append((header.name, header.value))
        if header.mismatch == "ADD":
            result.add.append((header.name, header.value))
        elif header.mismatch == "DELETE":
            result.remove.add(wanted)
        elif header.mismatch == "REPLACE":
            result.remove.add(wanted)
            result.add.append((header.name, header.value))
    return result


class Contribution(NamedTuple):
    """One allow rule's part of an endpoint direction's L7 table.

    ``rules`` None: the rule allows every request (an L3/L4 allow, or ``http: [{}]``); ``cookie`` is the
    rule's policy-map cookie (:class:`~.compiler.CookieJar`).
    """

    identity: int  # 0: every peer
    port: int  # 0: every port
    end_port: int
    proto: int  # 0: every protocol
    rules: tuple[HTTPRule, ...] | None
    cookie: int

    def covers(self, remote: int, port: int, proto: int) -> bool:
        if self.identity not in (0, remote) or self.proto not in (0, proto):
            return False
        if self.port == 0:
            return True
        return self.port == port or (self.end_port > self.port and self.port <= port <= self.end_port)


class Decision(NamedTuple):
    """What the proxy does with one request."""

    allowed: bool
    result: RuleResult | None  # the rule that allowed it (None: an allow-all contribution or a deny)
    allowed_by: tuple[int, ...]  # cookies of the rules that allow it
    denied_by: tuple[int, ...]  # cookies of the L7 rule sets that did not allow it


ALLOW_ALL_RESULT = RuleResult(HTTPRule())


@dataclass
class RuleSet:
    """Everything that matches one (remote identity, port, protocol) at L3/L4 for an endpoint direction."""

    contributions: list[Contribution]

    @property
    def needs_headers(self) -> bool:
        """Whether some rule looks at headers (the proxy decodes them only then)."""
        return any(r.headers for c in self.contributions if c.rules is not None for r in c.rules)

    @property
    def redirected(self) -> bool:
        return any(c.rules is not None for c in self.contributions)

    def decide(self, request: Request) -> Decision:
        allowed_by: list[int] = []
        first: RuleResult | None = None
        for c in self.contributions:
            if c.rules is None:
                allowed_by.append(c.cookie)
                continue
            for rule in c.rules:
                found = match_rule(rule, request)
                if found is not None:
                    allowed_by.append(c.cookie)
                    if first is None:
                        first = found
                    break
        if allowed_by:
            return Decision(True, first or ALLOW_ALL_RESULT, tuple(dict.fromkeys(allowed_by)), ())
        denied = tuple(dict.fromkeys(c.cookie for c in self.contributions if c.rules is not None))
        return Decision(False, None, (), denied)


class L7Table:
    """(endpoint id, direction) -> its allow contributions; lookups for the proxy."""

    def __init__(self, tables: Mapping[tuple[int, int], Iterable[Contribution]] | None = None) -> None:
        self.tables: dict[tuple[int, int], list[Contribution]] = {
            k: list(v) for k, v in (tables or {}).items()
        }

    def __bool__(self) -> bool:
        return bool(self.tables)

    def rule_set(self, ep_id: int, direction: int, remote: int, port: int, proto: int) -> RuleSet | None:
        """The rules for a connection, or None when no L7 rule applies to it (not redirected)."""
        table = self.tables.get((ep_id, direction))
        if not table:
            return None
        found = RuleSet([c for c in table if c.covers(remote, port, proto)])
        return found if found.redirected else None


def table_to_json(table: L7Table) -> list[dict]:
    """The table as JSON-able rows (rule lists are shared by index to keep the file small)."""
    rules: dict[tuple[HTTPRule, ...], int] = {}
    out: list[dict] = []
    for (ep_id, direction), contributions in sorted(table.tables.items()):
        rows = []
        for c in contributions:
            ref = None
            if c.rules is not None:
                ref = rules.setdefault(c.rules, len(rules))
            rows.append([c.identity, c.port, c.end_port, c.proto, ref, c.cookie])
        out.append({"endpoint": ep_id, "direction": direction, "entries": rows})
    listing = [[r.to_json() for r in key] for key, _ in sorted(rules.items(), key=lambda kv: kv[1])]
    return [{"rule_lists": listing}, *out]


def table_from_json(rows: list[dict]) -> L7Table:
    if not rows:
        return L7Table()
    lists = [tuple(HTTPRule.from_json(r) for r in rl) for rl in rows[0].get("rule_lists", [])]
    for rule_list in lists:  # compile now: a bad regex fails the whole load, not a request
        for rule in rule_list:
            rule.patterns()
    tables: dict[tuple[int, int], list[Contribution]] = {}
    for item in rows[1:]:
        tables[(int(item["endpoint"]), int(item["direction"]))] = [
            Contribution(int(i), int(p), int(e), int(pr), None if ref is None else lists[ref], int(ck))
            for i, p, e, pr, ref, ck in item["entries"]
        ]
    return L7Table(tables)
