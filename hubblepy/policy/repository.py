"""The set of applied policies: apply / delete whole files atomically, save and restore."""

from __future__ import annotations

from collections.abc import Iterable

from hubblepy.policy.model import Policy, PolicyRef
from hubblepy.policy.parse import parse_document


class PolicyRepository:
    """Applied policies by (kind, namespace, name); applying a policy with the same name replaces it."""

    def __init__(self) -> None:
        self._policies: dict[PolicyRef, Policy] = {}
        self.revision = 0

    def apply(self, policies: Iterable[Policy]) -> list[PolicyRef]:
        """Adds or replaces the (already validated) policies; returns their refs."""
        batch = list(policies)
        for policy in batch:
            self._policies[policy.ref] = policy
        self.revision += 1
        return [p.ref for p in batch]

    def delete(self, refs: Iterable[PolicyRef]) -> list[PolicyRef]:
        """Removes the policies that exist; returns those removed."""
        removed = [ref for ref in refs if self._policies.pop(ref, None) is not None]
        if removed:
            self.revision += 1
        return removed

    def policies(self) -> list[Policy]:
        return [self._policies[k] for k in sorted(self._policies)]

    def __contains__(self, ref: PolicyRef) -> bool:
        return ref in self._policies

    def __len__(self) -> int:
        return len(self._policies)

    def to_json(self) -> list[dict]:
        return [{"source": p.source, "document": p.document} for p in self.policies()]

    @classmethod
    def from_json(cls, rows: Iterable[dict]) -> PolicyRepository:
        repo = cls()
        repo.apply(parse_document(row["document"], row.get("source", "saved"), 1) for row in rows)
        return repo
