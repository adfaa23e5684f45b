"""``--metrics LIST``: which Hubble metric families to serve and with which options.

The syntax is cilium-agent's ``--hubble-metrics``: metric specs separated by spaces (or commas),
each ``NAME`` or ``NAME:OPTION[=VALUE];OPTION[=VALUE]...``, for example::

    dns:query;ignoreAAAA drop:sourceContext=namespace flow,policy
    httpV2:exemplars=true;labelsContext=source_namespace,destination_namespace

A comma inside a ``labelsContext`` value continues the label list when the next word is a
``labelsContext`` label (``source_ip``, ``traffic_direction``, ...), so Helm's ``\\,`` escape is
accepted but not needed. Option keys are case-insensitive, as upstream. Every metric name, option
name and context value is checked here: :func:`parse_metrics` raises :class:`MetricsConfigError`
with a one-line message, before anything is served.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Family name -> its own options (besides the context options every family takes).
FAMILY_OPTIONS: dict[str, tuple[str, ...]] = {
    "dns": ("query", "ignoreAAAA"),
    "drop": (),
    "flow": (),
    "flows-to-world": ("any-drop", "port", "syn-only"),
    "http": (),
    "httpV2": ("exemplars",),
    "icmp": (),
    "policy": (),
    "port-distribution": (),
    "tcp": (),
}
CONTEXT_KEYS = (
    "sourceContext",
    "sourceEgressContext",
    "sourceIngressContext",
    "destinationContext",
    "destinationEgressContext",
    "destinationIngressContext",
    "labelsContext",
)
CONTEXT_IDENTIFIERS = (
    "identity",
    "namespace",
    "pod",
    "pod-short",
    "pod-name",
    "dns",
    "ip",
    "reserved-identity",
    "workload",
    "workload-name",
    "app",
)
# labelsContext labels, in the order upstream puts them on a metric.
LABELS_CONTEXT = (
    "source_ip",
    "source_pod",
    "source_namespace",
    "source_workload",
    "source_workload_kind",
    "source_app",
    "destination_ip",
    "destination_pod",
    "destination_namespace",
    "destination_workload",
    "destination_workload_kind",
    "destination_app",
    "traffic_direction",
)
_SPLIT = re.compile(r"(?<!\\)[\s,]+")


class MetricsConfigError(ValueError):
    """An invalid ``--metrics`` value; ``str()`` is the one-line message."""


@dataclass
class MetricSpec:
    """One enabled family with its options (keys in upstream's spelling, values as given)."""

    name: str
    options: dict[str, str] = field(default_factory=dict)

    def flag(self, key: str) -> bool:
        return key in self.options

    def __str__(self) -> str:
        if not self.options:
            return self.name
        opts = ";".join(k if v == "" else f"{k}={v}" for k, v in self.options.items())
        return f"{self.name}:{opts}"


def _canonical_key(name: str, key: str) -> str:
    for known in (*CONTEXT_KEYS, *FAMILY_OPTIONS[name]):
        if known.lower() == key.lower():
            return known
    allowed = ", ".join((*FAMILY_OPTIONS[name], *CONTEXT_KEYS))
    raise MetricsConfigError(f"metric {name}: unknown option {key!r} (options: {allowed})")


def _check_value(name: str, key: str, value: str) -> str:
    if key == "labelsContext":
        labels = value.split(",")
        for label in labels:
            if label not in LABELS_CONTEXT:
                raise MetricsConfigError(
                    f"metric {name}: invalid labelsContext value {label!r} (labels: {', '.join(LABELS_CONTEXT)})"
                )
        return ",".join(labels)
    if key.endswith("Context"):
        for ident in value.split("|"):
            if ident.lower() not in CONTEXT_IDENTIFIERS:
                raise MetricsConfigError(
                    f"metric {name}: unknown {key} {ident!r} (contexts: {'|'.join(CONTEXT_IDENTIFIERS)})"
                )
        return value.lower()
    if key == "exemplars" and value not in ("true", "false"):
        raise MetricsConfigError(f"metric {name}: exemplars takes true or false, not {value!r}")
    if key != "exemplars" and value != "":
        raise MetricsConfigError(f"metric {name}: option {key} takes no value")
    return value


def _parse_one(text: str) -> MetricSpec:
    name, _, rest = text.partition(":")
    if name not in FAMILY_OPTIONS:
        raise MetricsConfigError(f"unknown metric {name!r} (metrics: {', '.join(FAMILY_OPTIONS)})")
    spec = MetricSpec(name)
    for item in filter(None, rest.split(";")):
        key, _, value = item.partition("=")
        key = _canonical_key(name, key.strip())
        spec.options[key] = _check_value(name, key, value.strip())
    return spec


def _words(text: str) -> list[str]:
    """Metric spec texts, with commas of a labelsContext value glued back to their spec."""
    specs: list[str] = []
    for word in _SPLIT.split(text.strip()):
        word = word.replace("\\,", ",")
        if not word:
            continue
        label_like = word in LABELS_CONTEXT or (word not in FAMILY_OPTIONS and ":" not in word)
        if specs and label_like and re.search(r"labelsContext=[^;]*$", specs[-1], re.I):
            specs[-1] += "," + word
        else:
            specs.append(word)
    return specs


def parse_metrics(text: str) -> list[MetricSpec]:
    """Parse a ``--metrics`` value; raises :class:`MetricsConfigError` on anything unknown."""
    specs = [_parse_one(word) for word in _words(text)]
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise MetricsConfigError(f"metric {spec.name} is given twice")
        seen.add(spec.name)
    if {"http", "httpV2"} <= seen:
        raise MetricsConfigError("metrics http and httpV2 cannot be enabled together")
    return specs


ALL_FAMILIES = "dns drop tcp flow port-distribution icmp httpV2 policy flows-to-world"
