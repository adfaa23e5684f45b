"""`hubble list nodes|namespaces`: what a relay knows, as upstream's tables or JSON."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TextIO

from hubblepy.cli.connection_flags import GLOBAL_FLAGS, SERVER_FLAGS
from hubblepy.cli.help import render_help
from hubblepy.cli.pflag import FlagSet, FlagSpec

NODE_REASONS_KEY = "hubblepy-node-reasons"
_NODE_STATES = {0: "Unknown", 1: "Connected", 2: "Unavailable", 3: "Gone", 4: "Error"}
_SUBCOMMANDS = {"nodes": "nodes", "node": "nodes", "namespaces": "namespaces"}

LIST_FLAGS = (
    FlagSpec(
        "output",
        "string",
        "o",
        help="output format: json, table or wide",
        group="Formatting",
        default='"table"',
    ),
    *SERVER_FLAGS,
    *GLOBAL_FLAGS,
)


def list_help(what: str = "") -> str:
    if what == "nodes":
        return render_help(
            "List the Hubble nodes a relay knows, with their state and flow counters.",
            ["hubble list nodes [flags]"],
            LIST_FLAGS,
            ("Formatting", "Server Flags", "Global Flags"),
        )
    if what == "namespaces":
        return render_help(
            "List the namespaces of the flows a server or relay keeps.",
            ["hubble list namespaces [flags]"],
            LIST_FLAGS,
            ("Formatting", "Server Flags", "Global Flags"),
        )
    return render_help(
        "List what a Hubble server or relay knows.",
        ["hubble list [command]"],
        GLOBAL_FLAGS,
        ("Global Flags",),
        commands=(("namespaces", "List namespaces with flows"), ("nodes", "List Hubble nodes")),
        footer='Use "hubble list [command] --help" for more information about a command.',
    )


def main(
    argv: list[str],
    env: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run `hubble list` with ``argv`` (the words after ``list``); returns the exit status."""
    from hubblepy.cli.connection import run_live

    what = _SUBCOMMANDS.get(argv[0], "") if argv else ""
    return run_live(lambda: list_help(what), _list, argv, env, out, err)


list_main = main


def _list(argv: list[str], env: Mapping[str, str], out: TextIO) -> int:
    from hubblepy.api.observer import observer_pb2, observer_pb2_grpc
    from hubblepy.cli.connection import LiveError, dial, hangup, parse_live_flags
    from hubblepy.cli.pflag import HelpRequested

    if not argv or argv[0] in ("-h", "--help", "help"):
        raise HelpRequested()
    what = _SUBCOMMANDS.get(argv[0])
    if what is None:
        raise LiveError(f'unknown command "{argv[0]}" for "hubble list"')
    values, _, conn = parse_live_flags(FlagSet(LIST_FLAGS), argv[1:], env)
    output = values.get("output", "table")
    if output not in ("json", "table", "wide"):
        raise LiveError(f"unknown output format: {output}")
    channel = dial(conn)
    try:
        stub = observer_pb2_grpc.ObserverStub(channel)
        if what == "nodes":
            res, call = stub.GetNodes.with_call(
                observer_pb2.GetNodesRequest(), timeout=conn.request_timeout_s
            )
            nodes = sorted(res.nodes, key=lambda n: n.name)
            reasons = _node_reasons(call.trailing_metadata())
            if output == "json":
                extra = [{"reason": reasons[n.address]} if n.address in reasons else {} for n in nodes]
                out.write(_json_array(nodes, extra))
            else:
                out.write(format_nodes_table(nodes, output == "wide", reasons))
        else:
            res = stub.GetNamespaces(observer_pb2.GetNamespacesRequest(), timeout=conn.request_timeout_s)
            items = list(res.namespaces)
            out.write(
                _json_array(items) if output == "json" else format_namespaces_table(items, output == "wide")
            )
    finally:
        hangup(channel)
    return 0


def _node_reasons(trailing: Any) -> dict[str, str]:
    """Why nodes are not connected, by address, from a hubblepy relay's GetNodes trailing metadata."""
    import json

    for key, value in trailing or ():
        if key == NODE_REASONS_KEY:
            try:
                reasons = json.loads(value)
            except ValueError:
                return {}
            if isinstance(reasons, dict):
                return {str(k): str(v) for k, v in reasons.items()}
    return {}


def _json_array(messages: list[Any], extra: list[dict[str, str]] | None = None) -> str:
    """Go's ``json.MarshalIndent(slice, "", "  ")`` of protojson messages, plus a newline.

    ``extra`` adds keys after each message's own (hubblepy's ``reason`` of a node that is down).
    """
    import json

    from hubblepy.codec import message_to_dict

    if not messages:
        return "[]\n"
    items = [message_to_dict(m) for m in messages]
    for item, more in zip(items, extra or (), strict=False):
        item.update(more)
    return json.dumps(items, indent=2, ensure_ascii=False) + "\n"


def format_nodes_table(nodes: list[Any], wide: bool, reasons: Mapping[str, str] | None = None) -> str:
    """Upstream's node table.

    When a node is not connected and the relay said why, ``-o wide`` adds hubblepy's REASON column
    (otherwise the table is upstream's, byte for byte).
    """
    from hubblepy.cli.timeparse import format_go_duration
    from hubblepy.printer.tabwriter import tabwrite

    reasons = {n.address: reasons[n.address] for n in nodes if reasons and n.address in reasons}
    header = ["NAME", "STATUS", "AGE", "FLOWS/S", "CURRENT/MAX-FLOWS"]
    if wide:
        header += ["VERSION", "ADDRESS", "TLS"] + (["REASON"] if reasons else [])
    rows = [header]
    for n in nodes:
        age = flows_per_sec = "N/A"
        uptime_s = round(n.uptime_ns / 1e9)
        if uptime_s > 0:
            age = format_go_duration(uptime_s * 1_000_000_000)
            flows_per_sec = f"{n.seen_flows / uptime_s:.2f}"
        ratio = "N/A"
        if n.max_flows > 0:
            ratio = f"{n.num_flows}/{n.max_flows} ({n.num_flows / n.max_flows * 100:6.2f}%)"
        row = [n.name, _NODE_STATES.get(n.state, "Unknown"), age, flows_per_sec, ratio]
        if wide:
            tls = "N/A"
            if n.HasField("tls"):
                tls = "Enabled" if n.tls.enabled else "Disabled"
            row += [n.version or "N/A", n.address, tls]
            if reasons:
                row.append(reasons.get(n.address, ""))
        rows.append(row)
    return tabwrite(rows)


def format_namespaces_table(namespaces: list[Any], wide: bool) -> str:
    rows = [["NAMESPACE", "CLUSTER"] if wide else ["NAMESPACE"]]
    for ns in namespaces:
        rows.append([ns.namespace, ns.cluster] if wide and ns.cluster else [ns.namespace])
    if not wide:
        return "".join(r[0] + "\n" for r in rows)
    from hubblepy.printer.tabwriter import tabwrite

    return tabwrite(rows)
