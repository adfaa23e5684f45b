"""Cilium's reserved security identities: the numbers every stage agrees on.

Pods get identities from their labels (see :mod:`hubblepy.policy.identity`); these few are fixed
and mean the same in the datapath, in policies, in filters and in printed flows.
"""

RESERVED_IDENTITIES: dict[str, int] = {
    "host": 1,
    "world": 2,
    "unmanaged": 3,
    "health": 4,
    "init": 5,
    "remote-node": 6,
    "kube-apiserver": 7,
    "ingress": 8,
    "world-ipv4": 9,
    "world-ipv6": 10,
}

# Has a number but no name in Cilium's table of names (`--identity` lists it as 11).
IDENTITY_OVERLAY_TO_ENCRYPT = 11
