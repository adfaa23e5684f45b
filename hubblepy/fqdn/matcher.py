"""DNS name selectors of ``toFQDNs`` (and DNS rules): ``matchName`` and ``matchPattern`` as Cilium reads them.

* Names are compared as fully qualified, lower-case names with a trailing dot: ``API.Stripe.com``,
  ``api.stripe.com`` and ``api.stripe.com.`` are one name (:func:`normalize_name`).
* ``matchName`` matches that one name exactly.
* ``matchPattern``: ``*`` alone matches every name; anywhere else ``*`` stands for any run of DNS
  characters (letters, digits, ``-``, ``_``) inside ONE label, so ``*.stripe.com`` matches
  ``api.stripe.com`` but neither ``stripe.com`` nor ``a.b.stripe.com``, and ``sub*.stripe.com``
  matches ``sub1.stripe.com``; a leading ``**.`` matches one or more whole labels. Every other
  character is literal. The pattern regexes are the DNS proxy's (:func:`hubblepy.policy.dns.pattern_regex`),
  so a name the proxy lets through for a pattern is the name toFQDNs selects with it.
"""

from __future__ import annotations

import re
from typing import NamedTuple

_DNS_CHARS = "[-a-z0-9_]"
MATCH_NAME = "matchName"
MATCH_PATTERN = "matchPattern"


def normalize_name(name: str) -> str:
    """``Api.Stripe.COM`` -> ``api.stripe.com.`` (lower case, one trailing dot)."""
    name = name.strip().lower()
    return name if name.endswith(".") else name + "."


def display_name(name: str) -> str:
    """A cached name as flows show it: lower case, no trailing dot."""
    return name.rstrip(".").lower()


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """The regular expression of a ``matchPattern`` over normalised names (the DNS proxy's)."""
    from hubblepy.policy.dns import pattern_regex as dns_pattern_regex  # policy imports this module

    text = normalize_name(pattern)
    if text == "*.":
        return re.compile(rf"\A(?:{_DNS_CHARS}+\.)+\Z|\A\.\Z")
    return dns_pattern_regex(text)


class FQDNSelector(NamedTuple):
    """One ``toFQDNs`` element: exactly one of ``match_name`` / ``match_pattern`` (normalised)."""

    match_name: str = ""
    match_pattern: str = ""

    @classmethod
    def name(cls, name: str) -> FQDNSelector:
        return cls(match_name=normalize_name(name))

    @classmethod
    def pattern(cls, pattern: str) -> FQDNSelector:
        return cls(match_pattern=normalize_name(pattern))

    @classmethod
    def from_dict(cls, item: dict) -> FQDNSelector:
        if item.get(MATCH_NAME):
            return cls.name(str(item[MATCH_NAME]))
        return cls.pattern(str(item[MATCH_PATTERN]))

    def matches(self, name: str) -> bool:
        """Whether a (normalised) DNS name is selected."""
        if self.match_name:
            return name == self.match_name
        return _compiled(self.match_pattern).match(name) is not None

    def label(self) -> str:
        """Cilium's identity label for the selector: ``fqdn:api.stripe.com`` / ``fqdn:*.stripe.com``."""
        return "fqdn:" + display_name(self.match_name or self.match_pattern)

    def __str__(self) -> str:
        if self.match_name:
            return f"{MATCH_NAME}: {display_name(self.match_name)}"
        return f"{MATCH_PATTERN}: {display_name(self.match_pattern)}"


_PATTERNS: dict[str, re.Pattern[str]] = {}  # compiled once per pattern text


def _compiled(pattern: str) -> re.Pattern[str]:
    found = _PATTERNS.get(pattern)
    if found is None:
        found = _PATTERNS[pattern] = pattern_regex(pattern)
    return found


__all__ = ["FQDNSelector", "display_name", "normalize_name", "pattern_regex"]
