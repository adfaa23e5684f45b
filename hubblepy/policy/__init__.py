"""Identity-based L3/L4 network policy: labels, identities, CiliumNetworkPolicy parsing and compilation.

Pure Python (no root needed). The pieces, in data-flow order:

* :mod:`.labels` / :mod:`.identity`: pod label sets and their numeric identities (reserved ones keep
  Cilium's numbers, local ones start at 256);
* :mod:`.parse`: YAML -> validated :class:`~.model.Policy` (whole file rejected on the first error,
  with file, document, field path and reason; DNS L7 rules and toFQDNs load with a warning);
* :mod:`.l7`: HTTP rules (Cilium's PortRuleHTTP), request matching, the proxy's rule table;
* :mod:`.repository`: the applied set (apply/delete by name);
* :mod:`.compiler`: policies + endpoints -> policy-map entries ``PolicyKey -> PolicyValue`` with
  per-endpoint enforcement flags, rule cookies and proxy ports, the L7 table, and the diff between two
  entry sets.
"""

from hubblepy.policy.compiler import (
    ACTION_ALLOW,
    ACTION_DENY,
    CompiledPolicy,
    CookieJar,
    Endpoint,
    EndpointPolicy,
    PolicyDiff,
    PolicyKey,
    PolicyValue,
    compile_policies,
    diff_entries,
)
from hubblepy.policy.errors import IdentityExhausted, PolicyError
from hubblepy.policy.identity import RESERVED_IDENTITIES, IdentityAllocator
from hubblepy.policy.labels import LabelSet, label_set, pod_labels
from hubblepy.policy.model import CCNP, CNP, EGRESS, INGRESS, Policy, PolicyRef, RuleRef
from hubblepy.policy.parse import load_policy_file, parse_policies
from hubblepy.policy.repository import PolicyRepository

__all__ = [
    "ACTION_ALLOW",
    "ACTION_DENY",
    "CCNP",
    "CNP",
    "EGRESS",
    "INGRESS",
    "RESERVED_IDENTITIES",
    "CompiledPolicy",
    "CookieJar",
    "Endpoint",
    "EndpointPolicy",
    "IdentityAllocator",
    "IdentityExhausted",
    "LabelSet",
    "Policy",
    "PolicyDiff",
    "PolicyError",
    "PolicyKey",
    "PolicyRef",
    "PolicyRepository",
    "PolicyValue",
    "RuleRef",
    "compile_policies",
    "diff_entries",
    "label_set",
    "load_policy_file",
    "parse_policies",
    "pod_labels",
]
