"""Agent and debug events (`hubble observe agent-events|debug-events`) in upstream's text forms.

Each function takes a ``GetAgentEventsResponse`` / ``GetDebugEventsResponse`` message and returns
the text upstream's printer writes for it: compact (one line), dict (``KEY: value`` lines) or the
cells of one table row (the caller aligns them with the tab writer).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hubblepy.api.flow import flow_pb2


def _join_host_port(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def agent_event_details(event: Any, stamp: Callable[[Any], str]) -> str:
    """Upstream's DETAILS text of a ``flow.AgentEvent``."""
    kind = event.type
    t = flow_pb2.AgentEventType
    which = event.WhichOneof("notification")
    if kind == t.AGENT_EVENT_UNKNOWN and which == "unknown":
        return f"type: {event.unknown.type}, notification: {event.unknown.notification}"
    if kind == t.AGENT_STARTED and which == "agent_start":
        return f"start time: {stamp(event.agent_start.time)}"
    if kind in (t.POLICY_UPDATED, t.POLICY_DELETED) and which == "policy_update":
        p = event.policy_update
        return f"labels: [{','.join(p.labels)}], revision: {p.revision}, count: {p.rule_count}"
    if (
        kind in (t.ENDPOINT_REGENERATE_SUCCESS, t.ENDPOINT_REGENERATE_FAILURE)
        and which == "endpoint_regenerate"
    ):
        r = event.endpoint_regenerate
        text = f"id: {r.id}, labels: [{','.join(r.labels)}]"
        return text + (f", error: {r.error}" if r.error else "")
    if kind in (t.ENDPOINT_CREATED, t.ENDPOINT_DELETED) and which == "endpoint_update":
        e = event.endpoint_update
        text = f"id: {e.id}"
        text += f", namespace: {e.namespace}" if e.namespace else ""
        return text + (f", pod name: {e.pod_name}" if e.pod_name else "")
    if kind in (t.IPCACHE_UPSERTED, t.IPCACHE_DELETED) and which == "ipcache_update":
        i = event.ipcache_update
        text = f"cidr: {i.cidr}, identity: {i.identity}"
        text += f", old identity: {i.old_identity.value}" if i.HasField("old_identity") else ""
        text += f", host ip: {i.host_ip}" if i.host_ip else ""
        text += f", old host ip: {i.old_host_ip}" if i.old_host_ip else ""
        return text + f", encrypt key: {i.encrypt_key}"
    if kind == t.SERVICE_UPSERTED and which == "service_upsert":
        s = event.service_upsert
        text = f"id: {s.id}"
        if s.HasField("frontend_address"):
            text += f", frontend: {_join_host_port(s.frontend_address.ip, s.frontend_address.port)}"
        if s.backend_addresses:
            text += (
                ", backends: [" + ",".join(_join_host_port(a.ip, a.port) for a in s.backend_addresses) + "]"
            )
        text += f", type: {s.type}" if s.type else ""
        text += f", traffic policy: {s.traffic_policy}" if s.traffic_policy else ""
        text += f", namespace: {s.namespace}" if s.namespace else ""
        return text + (f", name: {s.name}" if s.name else "")
    if kind == t.SERVICE_DELETED and which == "service_delete":
        return f"id: {event.service_delete.id}"
    return "UNKNOWN"


def _endpoint_short(ep: Any, present: bool) -> str:
    if not present:
        return "N/A"
    text = f"ID: {ep.ID}"
    if ep.namespace and ep.pod_name:
        return f"{ep.namespace}/{ep.pod_name} ({text})"
    if len(ep.labels) == 1 and ep.labels[0].startswith("reserved:"):
        return f"{ep.labels[0]} ({text})"
    return text


def _hex32(event: Any, name: str) -> str:
    return f"0x{getattr(event, name).value:x}" if event.HasField(name) else "N/A"


def _cpu(event: Any) -> str:
    return f"{event.cpu.value:02d}" if event.HasField("cpu") else "N/A"


class EventText:
    """Text of agent or debug event responses in one output format (compact, dict or table)."""

    def __init__(self, output: str, stamp: Callable[[Any], str], node_name: bool) -> None:
        self.output = output
        self.stamp = stamp
        self.node_name = node_name
        self.count = 0

    def agent(self, resp: Any) -> str | list[str]:
        event = resp.agent_event
        kind = (
            flow_pb2.AgentEventType.Name(event.type)
            if event.type in flow_pb2.AgentEventType.values()
            else str(event.type)
        )
        details = agent_event_details(event, self.stamp)
        when = self.stamp(resp.time)
        first = self.count == 0
        self.count += 1
        if self.output == "dict":
            lines = [] if first else ["------------"]
            lines.append(f"  TIMESTAMP: {when}")
            if self.node_name:
                lines.append(f"       NODE: {resp.node_name}")
            lines += [f"       TYPE: {kind}", f"    DETAILS: {details}"]
            return "".join(line + "\n" for line in lines)
        if self.output == "table":
            header = ["TIMESTAMP", *(["NODE"] if self.node_name else []), "TYPE", "DETAILS"]
            row = [when, *([resp.node_name] if self.node_name else []), kind, details]
            return [header, row] if first else [row]  # type: ignore[list-item]
        node = f" [{resp.node_name}]" if self.node_name else ""
        return f"{when}{node}: {kind} ({details})\n"

    def debug(self, resp: Any) -> str | list[str]:
        event = resp.debug_event
        kind = (
            flow_pb2.DebugEventType.Name(event.type)
            if event.type in flow_pb2.DebugEventType.values()
            else str(event.type)
        )
        source = _endpoint_short(event.source, event.HasField("source"))
        when = self.stamp(resp.time)
        first = self.count == 0
        self.count += 1
        if self.output == "dict":
            lines = [] if first else ["------------"]
            lines.append(f"  TIMESTAMP: {when}")
            if self.node_name:
                lines.append(f"       NODE: {resp.node_name}")
            lines += [
                f"       TYPE: {kind}",
                f"       FROM: {source}",
                f"       MARK: {_hex32(event, 'hash')}",
                f"        CPU: {_cpu(event)}",
                f"    MESSAGE: {event.message}",
            ]
            return "".join(line + "\n" for line in lines)
        if self.output == "table":
            header = [
                "TIMESTAMP",
                *(["NODE"] if self.node_name else []),
                "FROM",
                "",
                "TYPE",
                "CPU/MARK",
                "MESSAGE",
            ]
            row = [
                when,
                *([resp.node_name] if self.node_name else []),
                source,
                "",
                kind,
                f"{_cpu(event)} {_hex32(event, 'hash')}",
                event.message,
            ]
            return [header, row] if first else [row]  # type: ignore[list-item]
        node = f" [{resp.node_name}]" if self.node_name else ""
        return f"{when}{node}: {source} {kind} MARK: {_hex32(event, 'hash')} CPU: {_cpu(event)} ({event.message})\n"
