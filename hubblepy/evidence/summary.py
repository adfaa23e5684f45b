"""What the lines of ``flows.jsonl`` say: counts by verdict, lost events, time range, drops grouped.

Both the exporter and the verifier compute this from the file itself, so every number in the manifest
that comes from the flows can be checked against them offline.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

# The verdicts whose flows the report groups (what was stopped, or would have been).
DROP_VERDICTS = ("DROPPED", "AUDIT", "ERROR")


@dataclass
class FlowSummary:
    """Numbers taken from the lines of a flows file."""

    lines: int = 0
    flows: int = 0
    by_verdict: Counter = field(default_factory=Counter)
    lost_events: list[dict[str, Any]] = field(default_factory=list)
    first_time: str = ""
    last_time: str = ""
    nodes: set[str] = field(default_factory=set)
    drops: Counter = field(default_factory=Counter)  # (verdict, source, destination, port, policy)
    unreadable: list[int] = field(default_factory=list)

    def add(self, line: bytes) -> None:
        """Count one more line of the file."""
        self.lines += 1
        number = self.lines
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            self.unreadable.append(number)
            return
        if not isinstance(record, dict):
            self.unreadable.append(number)
            return
        flow = record.get("flow")
        if isinstance(flow, dict):
            _add_flow(self, flow)
        elif isinstance(record.get("lost_events"), dict):
            lost = record["lost_events"]
            self.lost_events.append(
                {
                    "line": number,
                    "node": record.get("node_name", ""),
                    "source": lost.get("source", "UNKNOWN_LOST_EVENT_SOURCE"),
                    "count": int(lost.get("num_events_lost", 0)),
                    "time": record.get("time", ""),
                }
            )

    def counts_json(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "flows": self.flows,
            "lost_event_records": len(self.lost_events),
            "by_verdict": dict(sorted(self.by_verdict.items())),
        }

    def time_range_json(self) -> dict[str, str]:
        return {"first_flow": self.first_time, "last_flow": self.last_time}


def summarize(lines: Iterable[bytes]) -> FlowSummary:
    summary = FlowSummary()
    for line in lines:
        summary.add(line)
    return summary


def _add_flow(summary: FlowSummary, flow: dict[str, Any]) -> None:
    summary.flows += 1
    verdict = flow.get("verdict", "VERDICT_UNKNOWN")
    summary.by_verdict[verdict] += 1
    stamp = flow.get("time", "")
    if stamp and (not summary.first_time or stamp < summary.first_time):
        summary.first_time = stamp
    if stamp and stamp > summary.last_time:
        summary.last_time = stamp
    if flow.get("node_name"):
        summary.nodes.add(flow["node_name"])
    if verdict in DROP_VERDICTS:
        summary.drops[
            (verdict, endpoint_text(flow, "source"), endpoint_text(flow, "destination"), port_text(flow),
             policy_text(flow))
        ] += 1  # fmt: skip


def endpoint_text(flow: dict[str, Any], side: str) -> str:
    """``namespace/workload`` (or pod), else the IP address, else ``-``."""
    ep = flow.get(side) or {}
    namespace = ep.get("namespace", "")
    workloads = ep.get("workloads") or []
    name = workloads[0].get("name", "") if workloads else ep.get("pod_name", "")
    if namespace and name:
        return f"{namespace}/{name}"
    ip = (flow.get("IP") or {}).get(side, "")
    names = flow.get(f"{side}_names") or []
    if names:
        return f"{names[0]} ({ip})" if ip else names[0]
    return ip or "-"


def port_text(flow: dict[str, Any]) -> str:
    l4 = flow.get("l4") or {}
    for proto, body in l4.items():
        if isinstance(body, dict) and "destination_port" in body:
            return f"{body['destination_port']}/{proto}"
        if isinstance(body, dict):
            return proto
    return "-"


def policy_text(flow: dict[str, Any]) -> str:
    """The policies the flow names as denying it, else its drop reason."""
    names = []
    for key in ("ingress_denied_by", "egress_denied_by"):
        for policy in flow.get(key) or []:
            ns = policy.get("namespace", "")
            names.append(f"{ns}/{policy.get('name', '')}" if ns else policy.get("name", ""))
    if names:
        return ", ".join(dict.fromkeys(names))
    return flow.get("drop_reason_desc") or "-"
