"""Labels and numeric identities."""

from __future__ import annotations

from hubblepy.policy.identity import FIRST_LOCAL_IDENTITY, RESERVED_IDENTITIES, IdentityAllocator
from hubblepy.policy.labels import label_set, namespace_of, parse_label, pod_labels


def test_reserved_identities_keep_cilium_numbers():
    assert RESERVED_IDENTITIES == {
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
    alloc = IdentityAllocator()
    assert alloc.lookup(["reserved:host"]) == 1
    assert alloc.labels_of(2) == ("reserved:world",)


def test_pod_labels_add_cilium_namespace_labels_sorted():
    labels = pod_labels("payments", {"app": "api"})
    assert labels == (
        "k8s:app=api",
        "k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=payments",
        "k8s:io.cilium.k8s.policy.cluster=default",
        "k8s:io.cilium.k8s.policy.serviceaccount=default",
        "k8s:io.kubernetes.pod.namespace=payments",
    )
    assert namespace_of(labels) == "payments"


def test_identity_is_allocated_on_the_sorted_label_set_and_stable():
    alloc = IdentityAllocator()
    a = alloc.allocate(["k8s:b=2", "k8s:a=1"])
    assert a == FIRST_LOCAL_IDENTITY
    assert alloc.allocate(["k8s:a=1", "k8s:b=2", "k8s:a=1"]) == a
    b = alloc.allocate(["k8s:a=1"])
    assert b == a + 1
    restored = IdentityAllocator(alloc.local_table())
    assert restored.lookup(["k8s:a=1", "k8s:b=2"]) == a
    assert restored.allocate(["k8s:c=3"]) == b + 1


def test_parse_label_sources():
    assert parse_label("k8s:app=api") == ("k8s", "app", "api")
    assert parse_label("app=api") == ("k8s", "app", "api")
    assert parse_label("reserved:host") == ("reserved", "host", "")
    assert parse_label("k8s:io.kubernetes.pod.namespace=x") == ("k8s", "io.kubernetes.pod.namespace", "x")
    assert label_set(["app=a", "k8s:app=a"]) == ("k8s:app=a",)
