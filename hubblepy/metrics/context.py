"""Context options of a metric family: the ``source`` / ``destination`` / labelsContext labels.

:func:`compile_context` turns a family's options into ``(label_names, values)`` where
``values(flow) -> tuple[str, ...]`` reads a canonical flow dict. Semantics follow upstream:
the first non-empty value of a ``a|b|c`` list wins; ``sourceEgressContext`` /
``sourceIngressContext`` (and the destination pair) replace ``sourceContext`` for flows of that
traffic direction; labelsContext labels are always present, empty when unknown. When only a
direction-specific context is given, flows of the other direction get an empty label.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from hubblepy.metrics.config import LABELS_CONTEXT, MetricSpec

Flow = dict[str, Any]
_EMPTY: dict[str, Any] = {}
_SHORT_POD = re.compile(r"^(.+?)(-[a-z0-9]+){1,2}$")
_APP_LABELS = ("k8s:app.kubernetes.io/name=", "k8s:k8s-app=", "k8s:app=")
_KUBE_APISERVER = "reserved:kube-apiserver"


def _app(labels: list[str]) -> str:
    for label in labels:
        for prefix in _APP_LABELS:
            if label.startswith(prefix) and len(label) > len(prefix):
                return label[len(prefix) :]
    return ""


def _reserved(labels: list[str]) -> str:
    if _KUBE_APISERVER in labels:
        return _KUBE_APISERVER
    return next((label for label in labels if label.startswith("reserved:")), "")


def _workload(ep: dict[str, Any], key: str) -> str:
    workloads = ep.get("workloads")
    return workloads[0].get(key, "") if workloads else ""


def _endpoint_value(ident: str, source: bool) -> Callable[[Flow], str]:
    side = "source" if source else "destination"
    names_key = "source_names" if source else "destination_names"
    ip_key = "source" if source else "destination"

    def ep(flow: Flow) -> dict[str, Any]:
        return flow.get(side) or _EMPTY

    def with_ns(flow: Flow, name: str) -> str:
        ns = ep(flow).get("namespace", "")
        return f"{ns}/{name}" if ns else name

    table: dict[str, Callable[[Flow], str]] = {
        "namespace": lambda f: ep(f).get("namespace", ""),
        "identity": lambda f: ",".join(ep(f).get("labels", ())),
        "pod": lambda f: with_ns(f, ep(f).get("pod_name", "")),
        "pod-short": lambda f: with_ns(f, _SHORT_POD.sub(r"\1", ep(f).get("pod_name", ""))),
        "pod-name": lambda f: ep(f).get("pod_name", ""),
        "dns": lambda f: ",".join(f.get(names_key, ())),
        "ip": lambda f: (f.get("IP") or _EMPTY).get(ip_key, ""),
        "reserved-identity": lambda f: _reserved(ep(f).get("labels", ())),
        "workload": lambda f: with_ns(f, _workload(ep(f), "name")) if ep(f).get("workloads") else "",
        "workload-name": lambda f: _workload(ep(f), "name"),
        "app": lambda f: _app(ep(f).get("labels", ())),
    }
    return table[ident]


def _first_of(idents: list[str], source: bool) -> Callable[[Flow], str]:
    getters = [_endpoint_value(i, source) for i in idents]
    if len(getters) == 1:
        return getters[0]

    def first(flow: Flow) -> str:
        for get in getters:
            value = get(flow)
            if value:
                return value
        return ""

    return first


def _directional(options: dict[str, str], prefix: str, source: bool) -> Callable[[Flow], str] | None:
    both = options.get(f"{prefix}Context")
    egress = options.get(f"{prefix}EgressContext")
    ingress = options.get(f"{prefix}IngressContext")
    if not (both or egress or ingress):
        return None
    default = _first_of(both.split("|"), source) if both else (lambda f: "")
    by_dir = {
        "EGRESS": _first_of(egress.split("|"), source) if egress else default,
        "INGRESS": _first_of(ingress.split("|"), source) if ingress else default,
    }
    if not (egress or ingress):
        return default
    return lambda f: by_dir.get(str(f.get("traffic_direction")), default)(f)


def _labels_context_value(label: str, invert: bool) -> Callable[[Flow], str]:
    if label == "traffic_direction":
        return lambda f: f.get("traffic_direction", "unknown").lower()
    side, _, what = label.partition("_")
    source = (side == "source") != invert
    ep_key = "source" if source else "destination"
    if what == "ip":
        return lambda f: (f.get("IP") or _EMPTY).get(ep_key, "")
    if what == "pod":
        return lambda f: (f.get(ep_key) or _EMPTY).get("pod_name", "")
    if what == "namespace":
        return lambda f: (f.get(ep_key) or _EMPTY).get("namespace", "")
    if what == "workload":
        return lambda f: _workload(f.get(ep_key) or _EMPTY, "name")
    if what == "workload_kind":
        return lambda f: _workload(f.get(ep_key) or _EMPTY, "kind")
    return lambda f: _app((f.get(ep_key) or _EMPTY).get("labels", ()))


def compile_context(spec: MetricSpec, invert: bool = False) -> tuple[list[str], Callable[[Flow], tuple]]:
    """Label names and a flow -> label values function for ``spec``'s context options.

    ``invert`` swaps source and destination (httpV2 counts response flows from the request's side).
    """
    names: list[str] = []
    getters: list[Callable[[Flow], str]] = []
    wanted = set(spec.options.get("labelsContext", "").split(",")) - {""}
    for label in LABELS_CONTEXT:
        if label in wanted:
            names.append(label)
            getters.append(_labels_context_value(label, invert))
    src = _directional(spec.options, "source", True)
    dst = _directional(spec.options, "destination", False)
    if invert:  # upstream computes both sides as usual, then swaps the two values
        blank: Callable[[Flow], str] = lambda f: ""  # noqa: E731
        src, dst = (dst or blank) if src else None, (src or blank) if dst else None
    if src is not None:
        names.append("source")
        getters.append(src)
    if dst is not None:
        names.append("destination")
        getters.append(dst)
    if not getters:
        return names, lambda f: ()
    return names, lambda f: tuple(g(f) for g in getters)


def context_needs(spec: MetricSpec) -> frozenset[str]:
    """Signature columns (registry.COLUMNS) the context labels of ``spec`` read."""
    opts = spec.options
    if not any(key.endswith("Context") for key in opts):
        return frozenset()
    needs = {"source", "destination", "direction"}
    idents = {i for key, v in opts.items() if key != "labelsContext" for i in v.split("|")}
    labels = set(opts.get("labelsContext", "").split(","))
    if "ip" in idents or {"source_ip", "destination_ip"} & labels:
        needs.add("ips")
    if "dns" in idents:
        needs.add("names")
    return frozenset(needs)
