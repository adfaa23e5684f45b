"""Completeness facts from a live Hubble server or relay, gathered around an evidence export.

Before the query: the nodes the server knows (``GetNodes``: name, state, ring size and how many flows
each has seen). During it: the node status events (NODE_CONNECTED names the nodes that answered,
NODE_UNAVAILABLE / NODE_ERROR the others) and lost-events records, seen by :class:`StreamWatcher`,
which sits in front of the observe printer without changing what it prints. After it: per node, the
oldest flow still in its ring (``GetFlows`` first=1 with a ``node_name`` filter), to tell whether the
window start was still held.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hubblepy.codec.timestamps import canonical_ns, format_ns

_STATE_NAMES = {
    0: "UNKNOWN_NODE_STATE",
    1: "NODE_CONNECTED",
    2: "NODE_UNAVAILABLE",
    3: "NODE_GONE",
    4: "NODE_ERROR",
}


@dataclass
class StreamWatcher:
    """A printer stand-in: notes node status events, then hands every record to ``printer``."""

    printer: Any
    answered: list[str] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)
    status_events: int = 0

    def write(self, resp: dict, raw: bytes | None = None) -> None:
        status = resp.get("node_status")
        if isinstance(status, dict):
            self.status_events += 1
            state = status.get("state_change")
            state = _STATE_NAMES.get(state, state) if isinstance(state, int) else state
            names = list(status.get("node_names") or [])
            if state == "NODE_CONNECTED":
                self.answered += [n for n in names if n not in self.answered]
            elif state in ("NODE_UNAVAILABLE", "NODE_GONE"):
                self.unavailable += [n for n in names if n not in self.unavailable]
            elif state == "NODE_ERROR":
                for name in names or ["?"]:
                    self.errors.append({"node": name, "message": status.get("message", "")})
        self.printer.write(resp, raw)

    def flush(self) -> None:
        self.printer.flush()

    def close(self) -> None:
        self.printer.close()


def known_nodes(channel: Any, timeout: float) -> list[dict[str, Any]]:
    """``GetNodes`` as plain dicts (name, state, address, num/max/seen flows, uptime)."""
    import grpc

    from hubblepy.api.observer import observer_pb2, observer_pb2_grpc

    try:
        reply = observer_pb2_grpc.ObserverStub(channel).GetNodes(
            observer_pb2.GetNodesRequest(), timeout=timeout
        )
    except grpc.RpcError:
        return []
    return [
        {
            "name": n.name,
            "state": _STATE_NAMES.get(n.state, str(n.state)),
            "address": n.address,
            "num_flows": n.num_flows,
            "max_flows": n.max_flows,
            "seen_flows": n.seen_flows,
            "uptime_ns": n.uptime_ns,
        }
        for n in sorted(reply.nodes, key=lambda n: n.name)
    ]


def oldest_flow_ns(channel: Any, node: str, timeout: float) -> int | None:
    """Time of the oldest flow ``node`` still holds (None when it holds none or cannot say)."""
    import grpc

    from hubblepy.api.flow import flow_pb2
    from hubblepy.api.observer import observer_pb2, observer_pb2_grpc

    request = observer_pb2.GetFlowsRequest(number=1, first=True)
    request.whitelist.append(flow_pb2.FlowFilter(node_name=[node]))
    try:
        for response in observer_pb2_grpc.ObserverStub(channel).GetFlows(request, timeout=timeout):
            if response.HasField("flow") and response.flow.HasField("time"):
                return response.flow.time.ToNanoseconds()
    except grpc.RpcError:
        return None
    return None


def completeness(
    nodes: list[dict[str, Any]],
    watcher: StreamWatcher,
    oldest: dict[str, int | None],
    since_ns: int | None,
    until_ns: int | None,
    now_ns: int,
    lost_events: list[dict[str, Any]],
) -> dict[str, Any]:
    """The manifest's ``completeness`` section and its plain-language problems."""
    problems: list[str] = []
    notes: list[str] = []
    asked = [n["name"] for n in nodes]
    answered = sorted(watcher.answered) if watcher.status_events else asked
    for name in asked:
        if name not in answered:
            problems.append(f"node {name} did not answer the query (state {_state_of(nodes, name)})")
    for error in watcher.errors:
        problems.append(f"node {error['node']} reported an error during the query: {error['message']}")
    for name in watcher.unavailable:
        if name not in asked:
            problems.append(f"node {name} was unavailable")
    _lost_sentences(lost_events, since_ns, until_ns, problems, notes, "reported by")
    rings = []
    for node in nodes:
        name = node["name"]
        wrapped = node["seen_flows"] > node["num_flows"]
        oldest_ns = oldest.get(name)
        started_ns = now_ns - node["uptime_ns"] if node["uptime_ns"] else None
        covered: bool | None
        if name not in answered:
            covered = None  # it did not answer: reported above
        elif wrapped:
            covered = since_ns is not None and oldest_ns is not None and oldest_ns <= since_ns
        else:
            covered = since_ns is None or started_ns is None or started_ns <= since_ns
        rings.append(
            {
                "node": name,
                "ring_capacity": node["max_flows"],
                "flows_held": node["num_flows"],
                "flows_seen": node["seen_flows"],
                "ring_wrapped": wrapped,
                "oldest_flow_time": format_ns(oldest_ns) if oldest_ns is not None else "",
                "node_started": format_ns(started_ns) if started_ns is not None else "",
                "window_start_held": covered,
            }
        )
        if covered or covered is None:
            continue
        if wrapped and since_ns is None:
            problems.append(
                f"node {name}: no --since was given and its ring has overwritten older flows "
                f"(oldest held: {time_text(oldest_ns)})"
            )
        elif wrapped:
            problems.append(
                f"node {name}: the window starts at {time_text(since_ns)} but its oldest flow still held is "
                f"{time_text(oldest_ns)} (ring of {node['max_flows']} "
                "flows overwritten)"
            )
        else:
            problems.append(
                f"node {name}: the window starts at {time_text(since_ns)} but the node only started observing "
                f"at {time_text(started_ns)}"
            )
    if not nodes:
        problems.append("the server did not list its nodes (GetNodes failed): completeness cannot be shown")
    return {
        "complete": not problems,
        "problems": problems,
        "notes": notes,
        "nodes": {"asked": asked, "answered": answered, "errors": watcher.errors, "details": nodes},
        "lost_events": lost_events,
        "rings": rings,
    }


def _state_of(nodes: list[dict[str, Any]], name: str) -> str:
    return next((n["state"] for n in nodes if n["name"] == name), "unknown")


def _lost_sentences(
    lost_events: list[dict[str, Any]],
    since_ns: int | None,
    until_ns: int | None,
    problems: list[str],
    notes: list[str],
    verb: str,
) -> None:
    """Lost events inside the window are problems; those outside it (a node sends its ring's lost-events
    records whatever the window) are notes."""
    for lost in lost_events:
        text = f"{lost['count']} events lost ({lost['source']}) {verb} {lost['node'] or 'the server'}" + (
            f" at {lost['time']}" if lost.get("time") else ""
        )
        stamp = canonical_ns(lost["time"]) if lost.get("time") else None
        outside = stamp is not None and (
            (since_ns is not None and stamp < since_ns) or (until_ns is not None and stamp > until_ns)
        )
        if outside:
            notes.append(text + ", outside the time window")
        else:
            problems.append(text)


def input_lost_events(path: Path) -> list[dict[str, Any]]:
    """Every lost-events record of a flows file, whatever the query's filters (which would hide them)."""
    from hubblepy.evidence.chain import iter_file_lines
    from hubblepy.evidence.summary import FlowSummary

    found = FlowSummary()
    for line in iter_file_lines(path):
        if b'"lost_events"' in line:
            found.add(line.removesuffix(b"\x00no-newline").rstrip(b"\r"))
    return found.lost_events


def file_completeness(
    path: str,
    input_sha256: str,
    nodes: set[str],
    lost_events: list[dict[str, Any]],
    since_ns: int | None,
    until_ns: int | None,
    unreadable: list[int] | None = None,
) -> dict[str, Any]:
    """Completeness of an export from a flows file: only what the file itself reports, and the lines of
    it that could not be read (skipped, so the query could not look at them)."""
    problems: list[str] = []
    if unreadable:
        shown = ", ".join(str(n) for n in unreadable[:20]) + (", ..." if len(unreadable) > 20 else "")
        problems.append(
            f"{len(unreadable)} line(s) of the input could not be read and were skipped (lines {shown})"
        )
    notes = [
        f"the source is a file ({path}, SHA-256 {input_sha256}): the bundle shows which of its flows match "
        "the query; whether the file itself held every flow of its nodes cannot be shown from it"
    ]
    _lost_sentences(lost_events, since_ns, until_ns, problems, notes, "recorded in the input by")
    for lost in lost_events:
        lost.pop("line", None)  # a line of the input, not of flows.jsonl
    return {
        "complete": not problems,
        "problems": problems,
        "notes": notes,
        "nodes": {"asked": [], "answered": sorted(nodes), "errors": [], "details": []},
        "lost_events": lost_events,
        "rings": [],
        "unreadable_input_lines": list(unreadable or []),
    }


def time_text(ns: int | None) -> str:
    return format_ns(ns) if ns is not None else "unknown"


__all__ = [
    "StreamWatcher",
    "canonical_ns",
    "completeness",
    "file_completeness",
    "known_nodes",
    "oldest_flow_ns",
]
