"""The validated policy model: what :mod:`hubblepy.policy.parse` produces and the compiler consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from hubblepy.policy.selector import Selector

CNP = "CiliumNetworkPolicy"
CCNP = "CiliumClusterwideNetworkPolicy"

PROTOCOLS = {"TCP": 6, "UDP": 17, "SCTP": 132}
ANY_PROTOCOLS = (6, 17, 132)  # what protocol ANY expands to when a port is given

INGRESS = 1  # same numbers as the datapath's directions
EGRESS = 2
DIRECTION_NAMES = {INGRESS: "ingress", EGRESS: "egress"}


class PolicyRef(NamedTuple):
    """Which policy: kind, namespace ('' for cluster-wide) and name."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


class RuleRef(NamedTuple):
    """One ingress/egress rule of a policy, the unit a policy-map cookie points to."""

    policy: PolicyRef
    direction: int
    index: int  # position of the spec (0 for `spec`, i for `specs[i]`) * 10000 + rule index

    def describe(self) -> str:
        spec, rule = divmod(self.index, 10000)
        where = f"specs[{spec - 1}]." if spec else "spec."
        return f"{self.policy.kind} {self.policy} {where}{DIRECTION_NAMES[self.direction]}[{rule}]"


@dataclass(frozen=True)
class PeerRule:
    """One element of ``ingress``/``egress``.

    ``selectors`` and ``entities`` are None when the field is absent. ``has_peer_field`` is True when
    any peer field was given (including not-enforced ones like toFQDNs): a rule with peer fields only
    selects those peers, a rule without any selects every peer (L4-only or allow-all).
    """

    selectors: tuple[Selector, ...] | None
    entities: tuple[str, ...] | None
    ports: tuple[tuple[int, str], ...] | None  # (port, protocol name); None when toPorts is absent
    has_peer_field: bool
    index: int


@dataclass(frozen=True)
class SpecRule:
    endpoint_selector: Selector
    ingress: tuple[PeerRule, ...] | None
    egress: tuple[PeerRule, ...] | None
    default_deny_ingress: bool
    default_deny_egress: bool
    spec_index: int


@dataclass
class Policy:
    """A validated CiliumNetworkPolicy / CiliumClusterwideNetworkPolicy document."""

    ref: PolicyRef
    specs: list[SpecRule]
    source: str = ""  # "file, document N"
    warnings: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    document: Any = None  # the YAML document as loaded, for saving and re-parsing
