"""Numeric security identities from label sets.

Reserved identities keep Cilium's numbers; label sets of pods get identities from
:data:`FIRST_LOCAL_IDENTITY` upward, allocated in order of first sight and never reused while the
allocator lives (its table can be saved and restored so a recreated pod keeps its identity).

CIDR prefixes named by policies get node-local identities as in Cilium (numbers with bit 24 set,
from :data:`FIRST_CIDR_IDENTITY`), labelled ``cidr:<prefix>`` and ``reserved:world``; the node writes
them into the ipcache LPM trie so the longest matching prefix decides a remote address's identity.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from hubblepy.identities import RESERVED_IDENTITIES
from hubblepy.policy.errors import IdentityExhausted
from hubblepy.policy.labels import LabelSet, label_set

IDENTITY_HOST = 1
IDENTITY_WORLD = 2
WORLD_IDENTITIES = frozenset({2, 9, 10})
FIRST_LOCAL_IDENTITY = 256
MAX_LOCAL_IDENTITY = 65535
LOCAL_SCOPE = 1 << 24  # Cilium's node-local identity scope (CIDR identities)
FIRST_CIDR_IDENTITY = LOCAL_SCOPE + 1
MAX_CIDR_IDENTITY = (1 << 25) - 1
CIDR_SOURCE = "cidr"


def cidr_labels(prefix: str) -> LabelSet:
    """The label set of a CIDR identity (``prefix`` normalised, e.g. ``192.0.2.0/24``)."""
    return label_set([f"{CIDR_SOURCE}:{prefix}", "reserved:world"])


def cidr_of(labels: LabelSet) -> str | None:
    """The prefix of a CIDR identity's label set, else None."""
    for text in labels:
        if text.startswith(CIDR_SOURCE + ":"):
            return text[len(CIDR_SOURCE) + 1 :]
    return None


def reserved_labels(name: str) -> LabelSet:
    return (f"reserved:{name}",)


class IdentityAllocator:
    """Label set -> identity, stable for the allocator's lifetime (and its saved table)."""

    def __init__(self, table: Mapping[int, Iterable[str]] | None = None) -> None:
        self._by_labels: dict[LabelSet, int] = {}
        self._by_id: dict[int, LabelSet] = {}
        for name, number in RESERVED_IDENTITIES.items():
            self._put(number, reserved_labels(name))
        self._next = FIRST_LOCAL_IDENTITY
        self._next_cidr = FIRST_CIDR_IDENTITY
        for number, labels in (table or {}).items():
            number = int(number)
            self._put(number, label_set(labels))
            if number >= LOCAL_SCOPE:
                self._next_cidr = max(self._next_cidr, number + 1)
            else:
                self._next = max(self._next, number + 1)

    def _put(self, number: int, labels: LabelSet) -> None:
        self._by_labels[labels] = number
        self._by_id[number] = labels

    def allocate(self, labels: Iterable[str]) -> int:
        """The identity of a label set, allocating a new one the first time it is seen."""
        key = label_set(labels)
        found = self._by_labels.get(key)
        if found is not None:
            return found
        if self._next > MAX_LOCAL_IDENTITY:
            raise IdentityExhausted("no free local identity left")
        number = self._next
        self._next += 1
        self._put(number, key)
        return number

    def allocate_cidr(self, prefix: str) -> int:
        """The node-local identity of a CIDR prefix (normalised string), allocated on first sight."""
        key = cidr_labels(prefix)
        found = self._by_labels.get(key)
        if found is not None:
            return found
        if self._next_cidr > MAX_CIDR_IDENTITY:
            raise IdentityExhausted("no free CIDR identity left")
        number = self._next_cidr
        self._next_cidr += 1
        self._put(number, key)
        return number

    def release(self, identity: int) -> None:
        """Forgets a CIDR identity no policy names any more (pod identities are kept)."""
        if identity >= LOCAL_SCOPE:
            labels = self._by_id.pop(identity, None)
            if labels is not None:
                self._by_labels.pop(labels, None)

    def cidr_identities(self) -> dict[str, int]:
        """prefix -> identity of every allocated CIDR identity."""
        out = {}
        for number, labels in self._by_id.items():
            if number >= LOCAL_SCOPE and (prefix := cidr_of(labels)) is not None:
                out[prefix] = number
        return out

    def lookup(self, labels: Iterable[str]) -> int | None:
        return self._by_labels.get(label_set(labels))

    def labels_of(self, identity: int) -> LabelSet | None:
        return self._by_id.get(identity)

    def items(self) -> list[tuple[int, LabelSet]]:
        """Every known identity with its labels, reserved ones included, by number."""
        return sorted(self._by_id.items())

    def local_table(self) -> dict[int, list[str]]:
        """The allocated (non-reserved) identities, for saving."""
        return {n: list(labels) for n, labels in self._by_id.items() if n >= FIRST_LOCAL_IDENTITY}
