"""L7 DNS rules (Cilium's ``PortRuleDNS``) and name selectors: ``matchName`` / ``matchPattern``.

Semantics, as Cilium's ``matchpattern`` package (docs/policy/l7.md):

* names are compared case-insensitively and as fully qualified names: ``Cilium.IO``, ``cilium.io``
  and ``cilium.io.`` are the same name;
* ``matchName`` is one exact name;
* ``matchPattern``: ``*`` alone matches every name (the root ``.`` too); elsewhere ``*`` matches zero
  or more characters of ONE label (letters, digits, ``-``, ``_``), so ``*.cilium.io`` matches
  ``sub.cilium.io`` but neither ``cilium.io`` nor ``a.b.cilium.io``, and ``sub*.cilium.io`` matches
  ``sub.cilium.io`` and ``sub-1.cilium.io``; a leading ``**.`` matches one or more whole labels
  (``**.cilium.io`` matches ``a.cilium.io`` and ``a.b.cilium.io``, not ``cilium.io``);
* a rule list allows a query when one of its selectors matches the query's name; ``dns: [{}]`` and
  ``matchPattern: "*"`` allow every name.

The DNS proxy's rule table is a :class:`~hubblepy.policy.l7.L7Table` whose contributions carry tuples
of :class:`DNSRule` (:func:`dns_table_to_json` / :func:`dns_table_from_json`), judged by
:func:`~hubblepy.policy.l7.judge` as the HTTP rules are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from hubblepy.policy.l7 import Contribution, L7Table, judge, load_rule_table, table_to_json

_NAME_CHARS = re.compile(r"^[-a-zA-Z0-9_.]+$")
_PATTERN_CHARS = re.compile(r"^[-a-zA-Z0-9_.*]+$")
_LABEL_CHARS = "[-a-z0-9_]"
MAX_NAME_LENGTH = 255


class DNSRuleError(ValueError):
    """A matchName / matchPattern that cannot be used (one-line reason)."""


def fqdn(name: str) -> str:
    """The name lower-cased with its trailing dot (``Cilium.io`` -> ``cilium.io.``)."""
    name = name.lower()
    return name if name.endswith(".") else name + "."


def check_name(text: str) -> None:
    if not text or len(text) > MAX_NAME_LENGTH or not _NAME_CHARS.match(text):
        raise DNSRuleError(f"{text!r} is not a valid DNS name (letters, digits, '-', '_' and '.')")


def check_pattern(text: str) -> None:
    if not text or len(text) > MAX_NAME_LENGTH or not _PATTERN_CHARS.match(text):
        raise DNSRuleError(f"{text!r} is not a valid DNS pattern (letters, digits, '-', '_', '.' and '*')")
    if "**" in text.removeprefix("**."):
        raise DNSRuleError(f"{text!r}: '**' is only allowed as a leading '**.'")


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """The anchored regular expression of a matchPattern (not ``*`` alone: that one matches all)."""
    text = fqdn(pattern)
    prefix = ""
    if text.startswith("**."):
        prefix = f"(?:{_LABEL_CHARS}+[.])+"
        text = text[3:]
    body = "".join(f"{_LABEL_CHARS}*" if ch == "*" else re.escape(ch) for ch in text)
    return re.compile(f"^{prefix}{body}$")


@dataclass(frozen=True)
class DNSRule:
    """One ``rules.dns[]`` element (or a toFQDNs selector): a name, a pattern, or neither (= all)."""

    match_name: str = ""
    match_pattern: str = ""
    _compiled: Any = field(default=None, compare=False, hash=False, repr=False)

    @property
    def matches_all(self) -> bool:
        return (not self.match_name and not self.match_pattern) or self.match_pattern == "*"

    def matcher(self) -> tuple[str, re.Pattern[str] | None]:
        """(exact fqdn or '', pattern regex or None), compiled once."""
        if self._compiled is None:
            name = fqdn(self.match_name) if self.match_name else ""
            regex = pattern_regex(self.match_pattern) if self.match_pattern and not self.matches_all else None
            object.__setattr__(self, "_compiled", (name, regex))
        return self._compiled

    def matches(self, name: str) -> bool:
        """Whether this selector allows ``name`` (any case, with or without the trailing dot)."""
        if self.matches_all:
            return True
        qname = fqdn(name)
        exact, regex = self.matcher()
        if exact and qname == exact:
            return True
        return regex is not None and regex.match(qname) is not None

    def describe(self) -> str:
        if self.match_pattern:
            return f"matchPattern {self.match_pattern}"
        if self.match_name:
            return f"matchName {self.match_name}"
        return "every name"

    def to_json(self) -> dict[str, str]:
        out = {}
        if self.match_name:
            out["matchName"] = self.match_name
        if self.match_pattern:
            out["matchPattern"] = self.match_pattern
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> DNSRule:
        name = str(obj.get("matchName") or "")
        pattern = str(obj.get("matchPattern") or "")
        if name:
            check_name(name)
        if pattern:
            check_pattern(pattern)
        return cls(name, pattern)


def _allowing(rule: DNSRule, name: str) -> DNSRule | None:
    """The rule when it allows ``name`` (the match function :func:`decide` gives ``judge``)."""
    return rule if rule.matches(name) else None


class DNSDecision(NamedTuple):
    """What the DNS proxy does with one query."""

    allowed: bool
    rule: DNSRule | None  # the rule that allowed it (None: an allow-all contribution, or a deny)
    allowed_by: tuple[int, ...]  # cookies of the rules that allow it
    denied_by: tuple[int, ...]  # cookies of the DNS rule sets that did not allow it


def decide(contributions: Iterable[Contribution], name: str) -> DNSDecision:
    """Judges one query name against every contribution matching the connection at L3/L4.

    A contribution without rules (an L3/L4 allow of the same peer and port) allows every name, as
    Cilium merges an L4-only allow with an L7 rule on the same port.
    """
    first, allowed_by, denied_by = judge(contributions, _allowing, name)
    return DNSDecision(bool(allowed_by), first, allowed_by, denied_by)


def is_dns_rules(rules: object) -> bool:
    """Whether a contribution's rule tuple holds DNS rules (not HTTP ones)."""
    return isinstance(rules, tuple) and bool(rules) and isinstance(rules[0], DNSRule)


def split_tables(table: L7Table) -> tuple[L7Table, L7Table]:
    """(HTTP table, DNS table) of a compiled L7 table that holds both kinds of rules.

    Each keeps the rule-less (L3/L4) contributions of an endpoint direction that has rules of its
    kind; a direction without any rule of a kind is not in that kind's table.
    """
    http: dict[tuple[int, int], list[Contribution]] = {}
    dns: dict[tuple[int, int], list[Contribution]] = {}
    for where, contributions in table.tables.items():
        kinds = {is_dns_rules(c.rules) for c in contributions if c.rules is not None}
        if False in kinds:
            http[where] = [c for c in contributions if c.rules is None or not is_dns_rules(c.rules)]
        if True in kinds:
            dns[where] = [c for c in contributions if c.rules is None or is_dns_rules(c.rules)]
    return L7Table(http), L7Table(dns)


def dns_table_to_json(table: L7Table) -> list[dict]:
    """The DNS table as JSON-able rows (the format of :func:`hubblepy.policy.l7.table_to_json`)."""
    return table_to_json(table)


def dns_table_from_json(rows: list[dict]) -> L7Table:
    """Raises ValueError/KeyError/TypeError (DNSRuleError included) on a bad table."""
    return load_rule_table(rows, DNSRule.from_json, DNSRule.matcher)
