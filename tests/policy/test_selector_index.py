"""The inverted identity index answers exactly what walking every label set with the selector does."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hubblepy.policy.selector import IdentityIndex, Selector, requirement

KEYS = ["app", "tier", "k8s:app", "io.kubernetes.pod.namespace", "reserved:host"]
VALUES = ["a", "b", "c", ""]

label_sets = st.lists(
    st.lists(
        st.tuples(
            st.sampled_from(["k8s", "reserved"]),
            st.sampled_from(["app", "tier", "host"]),
            st.sampled_from(VALUES),
        ),
        max_size=4,
    ).map(lambda labs: tuple(sorted({f"{s}:{k}={v}" if v else f"{s}:{k}" for s, k, v in labs}))),
    max_size=12,
)
requirements = st.tuples(
    st.sampled_from(KEYS),
    st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist"]),
    st.lists(st.sampled_from(VALUES), min_size=1, max_size=3),
)


@settings(max_examples=200, deadline=None)
@given(label_sets, st.lists(requirements, max_size=3))
def test_index_matches_walking(sets, reqs):
    identities = {256 + i: labels for i, labels in enumerate(sets)}
    selector = Selector(
        tuple(requirement(k, op, vals if op in ("In", "NotIn") else []) for k, op, vals in reqs)
    )
    expected = {n for n, labels in identities.items() if selector.matches(labels)}
    assert IdentityIndex(identities).select(selector) == expected
