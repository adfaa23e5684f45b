"""The validated policy model: what :mod:`hubblepy.policy.parse` produces and the compiler consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from hubblepy.fqdn.matcher import FQDNSelector
from hubblepy.policy.dns import DNSRule
from hubblepy.policy.l7 import HTTPRule
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


NETWORK_POLICY = "NetworkPolicy"  # networking.k8s.io/v1
DENY_INDEX_OFFSET = 5000  # RuleRef.index of ingressDeny/egressDeny rules: + this offset


class RuleRef(NamedTuple):
    """One ingress/egress rule of a policy, the unit a policy-map cookie points to."""

    policy: PolicyRef
    direction: int
    index: int  # type: ignore[assignment]  # shadows tuple.index on purpose; spec position (0 `spec`, i `specs[i]`) * 10000 + rule index (+ 5000 for deny rules)

    def describe(self) -> str:
        spec, rule = divmod(self.index, 10000)
        where = f"specs[{spec - 1}]." if spec else "spec."
        field_name = DIRECTION_NAMES[self.direction]
        if rule >= DENY_INDEX_OFFSET:
            rule -= DENY_INDEX_OFFSET
            field_name += "Deny"
        return f"{self.policy.kind} {self.policy} {where}{field_name}[{rule}]"


class PortRule(NamedTuple):
    """One ``toPorts[].ports[]`` / NetworkPolicy ``ports[]`` element.

    ``port`` 0 means every port; ``end_port`` > ``port`` makes it the range port..end_port; ``name``
    is a named port (resolved against the scenario's container ports; ``port`` is then 0). ``http`` is
    the ``rules.http`` list of its ``toPorts`` element (None: no L7 rules; the port is then plain L4);
    ``dns`` likewise its ``rules.dns`` list (at most one of the two is set).
    """

    port: int
    protocol: str  # TCP | UDP | SCTP | ANY
    end_port: int = 0
    name: str = ""
    http: tuple[HTTPRule, ...] | None = None
    dns: tuple[DNSRule, ...] | None = None


class CIDRRule(NamedTuple):
    """A ``fromCIDR``/``toCIDR`` prefix or a ``*CIDRSet``/``ipBlock`` entry with its holes."""

    cidr: str  # normalised (host bits cleared), e.g. 192.0.2.0/24
    excepts: tuple[str, ...] = ()


@dataclass(frozen=True)
class PeerRule:
    """One element of ``ingress``/``egress``.

    ``selectors``, ``entities`` and ``fqdns`` (``toFQDNs``) are None when the field is absent.
    ``has_peer_field`` is True when any peer field was given: a rule with peer fields only selects
    those peers, a rule without any selects every peer (L4-only or allow-all).
    """

    selectors: tuple[Selector, ...] | None
    entities: tuple[str, ...] | None
    ports: tuple[PortRule, ...] | None  # None when toPorts is absent
    has_peer_field: bool
    index: int
    cidrs: tuple[CIDRRule, ...] | None = None
    fqdns: tuple[FQDNSelector, ...] | None = None


@dataclass(frozen=True)
class SpecRule:
    endpoint_selector: Selector
    ingress: tuple[PeerRule, ...] | None
    egress: tuple[PeerRule, ...] | None
    default_deny_ingress: bool
    default_deny_egress: bool
    spec_index: int
    ingress_deny: tuple[PeerRule, ...] | None = None
    egress_deny: tuple[PeerRule, ...] | None = None
    # NetworkPolicy policyTypes: the direction is isolated (default deny) even without any rule
    isolate_ingress: bool = False
    isolate_egress: bool = False


@dataclass
class Policy:
    """A validated CiliumNetworkPolicy / CiliumClusterwideNetworkPolicy / NetworkPolicy document."""

    ref: PolicyRef
    specs: list[SpecRule]
    source: str = ""  # "file, document N"
    warnings: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    document: Any = None  # the YAML document as loaded, for saving and re-parsing
