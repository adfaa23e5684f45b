"""L7 HTTP rules (Cilium's ``PortRuleHTTP``): the model, request matching, and the proxies' rule table.

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

The table, its JSON form (:func:`table_to_json`, :func:`load_rule_table`) and the judging of the
contributions that cover a connection (:func:`judge`) do not depend on the rule kind: the DNS rules
(:mod:`.dns`) use the same ones with their own rule class and match function.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

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

    ``rules``: the rule list (:class:`HTTPRule` or :class:`~.dns.DNSRule` elements); None: the rule
    allows everything (an L3/L4 allow, or ``http: [{}]``); ``cookie`` is the rule's policy-map cookie
    (:class:`~.compiler.CookieJar`).
    """

    identity: int  # 0: every peer
    port: int  # 0: every port
    end_port: int
    proto: int  # 0: every protocol
    rules: tuple[Any, ...] | None
    cookie: int

    def covers(self, remote: int, port: int, proto: int) -> bool:
        if self.identity not in (0, remote) or self.proto not in (0, proto):
            return False
        if self.port == 0:
            return True
        return self.port == port or (self.end_port > self.port and self.port <= port <= self.end_port)


R = TypeVar("R")  # a rule kind (HTTPRule, DNSRule)
S = TypeVar("S")  # what its rules look at (a Request, a query name)
T = TypeVar("T")  # what a matching rule gives (a RuleResult, the DNSRule)


def judge(
    contributions: Iterable[Contribution], match: Callable[[R, S], T | None], subject: S
) -> tuple[T | None, tuple[int, ...], tuple[int, ...]]:
    """Judges ``subject`` against the contributions that cover its connection at L3/L4.

    ``match(rule, subject)`` is a rule's result when it allows the subject, else None; in a rule list
    the first matching rule wins. A contribution without rules allows everything, as Cilium merges an
    L4-only allow with an L7 rule on the same port. Returns (the first result, or None when only
    rule-less contributions allow; the cookies that allow; the cookies of the rule lists that did not
    allow, only when nothing allows): the subject is allowed when the second is not empty.
    """
    allowed_by: list[int] = []
    redirected: list[int] = []
    first: T | None = None
    for c in contributions:
        if c.rules is None:
            allowed_by.append(c.cookie)
            continue
        redirected.append(c.cookie)
        for rule in c.rules:
            found = match(rule, subject)
            if found is not None:
                allowed_by.append(c.cookie)
                if first is None:
                    first = found
                break
    if allowed_by:
        return first, tuple(dict.fromkeys(allowed_by)), ()
    return None, (), tuple(dict.fromkeys(redirected))


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
        first, allowed_by, denied_by = judge(self.contributions, match_rule, request)
        if allowed_by:
            return Decision(True, first or ALLOW_ALL_RESULT, allowed_by, ())
        return Decision(False, None, (), denied_by)


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
    """The table as JSON-able rows, for any rule kind with ``to_json()`` (rule lists are shared by
    index to keep the file small)."""
    lists: dict[tuple[Any, ...], int] = {}
    out: list[dict] = []
    for (ep_id, direction), contributions in sorted(table.tables.items()):
        rows = []
        for c in contributions:
            ref = None if c.rules is None else lists.setdefault(c.rules, len(lists))
            rows.append([c.identity, c.port, c.end_port, c.proto, ref, c.cookie])
        out.append({"endpoint": ep_id, "direction": direction, "entries": rows})
    listing = [[r.to_json() for r in key] for key, _ in sorted(lists.items(), key=lambda kv: kv[1])]
    return [{"rule_lists": listing}, *out]


def load_rule_table(
    rows: list[dict], parse_rule: Callable[[Mapping[str, Any]], R], compile_rule: Callable[[R], object]
) -> L7Table:
    """The table of :func:`table_to_json` rows whose rules ``parse_rule`` reads.

    Every rule is compiled (``compile_rule``) now, so a bad one fails the whole load, not a request.
    Raises ValueError/KeyError/TypeError (the rule kind's own errors included) on a bad table.
    """
    if not rows:
        return L7Table()
    lists = [tuple(parse_rule(r) for r in rl) for rl in rows[0].get("rule_lists", [])]
    for rule_list in lists:
        for rule in rule_list:
            compile_rule(rule)
    tables: dict[tuple[int, int], list[Contribution]] = {}
    for item in rows[1:]:
        tables[(int(item["endpoint"]), int(item["direction"]))] = [
            Contribution(int(i), int(p), int(e), int(pr), None if ref is None else lists[ref], int(ck))
            for i, p, e, pr, ref, ck in item["entries"]
        ]
    return L7Table(tables)


def table_from_json(rows: list[dict]) -> L7Table:
    """The HTTP rule table of :func:`table_to_json` rows (raises RegexError on a bad regex)."""
    return load_rule_table(rows, HTTPRule.from_json, HTTPRule.patterns)
