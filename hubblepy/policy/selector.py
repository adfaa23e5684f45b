"""Endpoint selectors (matchLabels + matchExpressions) compiled once and matched on label sets.

Keys may carry a source (``k8s:app``); a key without one matches a label of any source, as in
Cilium. A selector with no requirement (``{}``) matches every label set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hubblepy.policy.labels import ANY_SOURCE, LabelSet, label_index, parse_label, split_source

OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


@dataclass(frozen=True)
class Requirement:
    source: str
    key: str
    operator: str
    values: frozenset[str] = frozenset()

    def matches(self, index: dict[str, list[tuple[str, str]]]) -> bool:
        found = [v for s, v in index.get(self.key, ()) if self.source == ANY_SOURCE or s == self.source]
        if self.operator == "In":
            return any(v in self.values for v in found)
        if self.operator == "NotIn":
            return not any(v in self.values for v in found)
        if self.operator == "Exists":
            return bool(found)
        return not found  # DoesNotExist


@dataclass(frozen=True)
class Selector:
    """A compiled endpoint selector: all requirements must hold."""

    requirements: tuple[Requirement, ...] = field(default_factory=tuple)

    def matches(self, labels: LabelSet) -> bool:
        if not self.requirements:
            return True
        index = label_index(labels)
        return all(r.matches(index) for r in self.requirements)

    def mentions(self, source_key: tuple[str, str]) -> bool:
        """True when a requirement is on ``key`` (``source`` any or equal)."""
        source, key = source_key
        return any(r.key == key and r.source in (ANY_SOURCE, source) for r in self.requirements)

    def with_requirement(self, requirement: Requirement) -> Selector:
        return Selector(self.requirements + (requirement,))

    def is_wildcard(self) -> bool:
        return not self.requirements


def requirement(key: str, operator: str, values: list[str] | tuple[str, ...] = ()) -> Requirement:
    source, bare = split_source(key, ANY_SOURCE)
    return Requirement(source, bare, operator, frozenset(values))


def selector_from_parts(
    match_labels: dict[str, str] | None, match_expressions: list[tuple[str, str, list[str]]] | None
) -> Selector:
    reqs = [requirement(k, "In", [v]) for k, v in (match_labels or {}).items()]
    reqs += [requirement(k, op, vals) for k, op, vals in (match_expressions or [])]
    return Selector(tuple(reqs))


class IdentityIndex:
    """Inverted label index over a fixed set of identities: selectors become set operations.

    ``select`` answers which identities a selector matches (cached per selector), without walking
    every label set for every selector.
    """

    def __init__(self, identities: dict[int, tuple[str, ...]] | Any) -> None:
        self.all: frozenset[int] = frozenset(identities)
        self._by_value: dict[tuple[str, str, str], set[int]] = {}  # (source|any, key, value)
        self._by_key: dict[tuple[str, str], set[int]] = {}  # (source|any, key)
        for number, labels in identities.items():
            for text in labels:
                lab = parse_label(text)
                for source in (lab.source, ANY_SOURCE):
                    self._by_value.setdefault((source, lab.key, lab.value), set()).add(number)
                    self._by_key.setdefault((source, lab.key), set()).add(number)
        self._cache: dict[Selector, frozenset[int]] = {}

    def _requirement(self, r: Requirement) -> set[int] | frozenset[int]:
        if r.operator in ("In", "NotIn"):
            hit: set[int] = set()
            for value in r.values:
                hit |= self._by_value.get((r.source, r.key, value), set())
            return hit if r.operator == "In" else self.all - hit
        has = self._by_key.get((r.source, r.key), set())
        return has if r.operator == "Exists" else self.all - has

    def select(self, selector: Selector) -> frozenset[int]:
        found = self._cache.get(selector)
        if found is None:
            result: set[int] | frozenset[int] = self.all
            for r in selector.requirements:
                result = result & self._requirement(r)
                if not result:
                    break
            found = frozenset(result)
            self._cache[selector] = found
        return found
