"""Labels as Cilium writes them: ``source:key=value``.

A label set is a sorted tuple of label strings; sorting makes equal sets compare and hash equal, which
is what numeric identities are allocated on. Pods get their own labels with the ``k8s`` source plus
the labels Cilium adds for every pod (namespace, namespace name label, cluster, service account).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import NamedTuple

DEFAULT_SOURCE = "k8s"
ANY_SOURCE = "any"
NAMESPACE_KEY = "io.kubernetes.pod.namespace"
NAMESPACE_LABEL = f"k8s:{NAMESPACE_KEY}"
NAMESPACE_LABEL_PREFIX = "io.cilium.k8s.namespace.labels."  # + a namespace label's key
NAMESPACE_NAME_KEY = NAMESPACE_LABEL_PREFIX + "kubernetes.io/metadata.name"
CLUSTER_KEY = "io.cilium.k8s.policy.cluster"
SERVICE_ACCOUNT_KEY = "io.cilium.k8s.policy.serviceaccount"
DEFAULT_CLUSTER = "default"

LabelSet = tuple[str, ...]


class Label(NamedTuple):
    source: str
    key: str
    value: str

    def __str__(self) -> str:
        return f"{self.source}:{self.key}={self.value}" if self.value else f"{self.source}:{self.key}"


def split_source(text: str, default_source: str) -> tuple[str, str]:
    """``k8s:app`` -> (``k8s``, ``app``); ``app`` -> (default_source, ``app``).

    Only the text before the first ``=`` is considered, so values may contain colons.
    """
    source, sep, rest = text.partition(":")
    if sep and "/" not in source and "." not in source and "=" not in source:
        return source, rest
    return default_source, text


def parse_label(text: str, default_source: str = DEFAULT_SOURCE) -> Label:
    """Parses ``source:key=value`` (source and value optional)."""
    head, _, value = text.partition("=")
    source, key = split_source(head, default_source)
    return Label(source, key, value)


def label_set(labels: Iterable[str | Label]) -> LabelSet:
    """A canonical (sorted, de-duplicated) label set from label strings or Labels."""
    return tuple(sorted({str(parse_label(x)) if isinstance(x, str) else str(x) for x in labels}))


def pod_labels(
    namespace: str,
    labels: Mapping[str, str],
    service_account: str = "default",
    cluster: str = DEFAULT_CLUSTER,
    namespace_labels: Mapping[str, str] | None = None,
) -> LabelSet:
    """The identity-relevant label set Cilium derives for a pod.

    ``namespace_labels`` (the namespace object's labels) become
    ``k8s:io.cilium.k8s.namespace.labels.<key>=<value>``, which NetworkPolicy namespaceSelectors
    and CiliumNetworkPolicy selectors match on; ``kubernetes.io/metadata.name`` is always there.
    """
    out = [f"{DEFAULT_SOURCE}:{key}={value}" for key, value in labels.items()]
    out += [f"k8s:{NAMESPACE_LABEL_PREFIX}{key}={value}" for key, value in (namespace_labels or {}).items()]
    out += [
        f"k8s:{NAMESPACE_KEY}={namespace}",
        f"k8s:{NAMESPACE_NAME_KEY}={namespace}",
        f"k8s:{CLUSTER_KEY}={cluster}",
        f"k8s:{SERVICE_ACCOUNT_KEY}={service_account}",
    ]
    return label_set(out)


@lru_cache(maxsize=65536)
def label_index(labels: LabelSet) -> dict[str, list[tuple[str, str]]]:
    """key -> [(source, value), ...] for selector matching (cached per label set: do not mutate)."""
    index: dict[str, list[tuple[str, str]]] = {}
    for text in labels:
        lab = parse_label(text)
        index.setdefault(lab.key, []).append((lab.source, lab.value))
    return index


def namespace_of(labels: LabelSet) -> str | None:
    prefix = NAMESPACE_LABEL + "="
    for text in labels:
        if text.startswith(prefix):
            return text[len(prefix) :]
    return None
