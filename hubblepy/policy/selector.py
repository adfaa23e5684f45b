"""Endpoint selectors (matchLabels + matchExpressions) compiled once and matched on label sets.

Keys may carry a source (``k8s:app``); a key without one matches a label of any source, as in
Cilium. A selector with no requirement (``{}``) matches every label set.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hubblepy.policy.labels import ANY_SOURCE, LabelSet, label_index, split_source

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
