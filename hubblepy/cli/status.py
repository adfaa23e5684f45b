"""`hubble status`: health check, then ServerStatus, printed as upstream's printer writes it.

Outputs: ``compact`` (default), ``dict``, ``table`` and ``json``:

* counts are grouped by thousands with commas (``8,190``), as upstream's ``uint64Grouping``;
* ``Flows/s`` is the server's ``flows_rate`` (each node measures it over the last minute or the
  span its ring covers, whichever is shorter; a relay adds its nodes' rates) printed with two
  decimals; only when the server sends no rate does the compact form fall back to
  ``seen_flows / uptime``, and the other forms print ``N/A``;
* the uptime is Go's ``time.Duration`` text (``1h2m3.5s``);
* hubblepy nodes also send what they lost, in a ``hubblepy-lost-events`` trailer of the call
  (upstream servers never do, upstream clients ignore it): the compact form then ends with
  ``Lost Events (perf buffer)``, ``Ring Overwritten`` and ``Lost Events (slow readers)`` lines,
  each only when non-zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TextIO

from hubblepy.cli.connection_flags import GLOBAL_FLAGS, SERVER_FLAGS
from hubblepy.cli.help import render_help
from hubblepy.cli.pflag import FlagSet, FlagSpec
from hubblepy.cli.timeparse import format_go_duration

OUTPUTS = ("compact", "dict", "json", "JSON", "jsonpb", "tab", "table")


STATUS_FLAGS = (
    FlagSpec(
        "output",
        "string",
        "o",
        help="output format: compact, dict, json (also JSON, jsonpb) or table (also tab)",
        group="Formatting",
        default='"compact"',
    ),
    *SERVER_FLAGS,
    *GLOBAL_FLAGS,
)


def status_help() -> str:
    return render_help(
        "Show the health and flow counters of a Hubble server or relay.",
        ["hubble status [flags]"],
        STATUS_FLAGS,
        ("Formatting", "Server Flags", "Global Flags"),
    )


def main(
    argv: list[str],
    env: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run `hubble status` with ``argv``; returns the exit status."""
    from hubblepy.cli.connection import run_live

    return run_live(status_help, _status, argv, env, out, err)


status_main = main


def _status(argv: list[str], env: Mapping[str, str], out: TextIO) -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from hubblepy.api.observer import observer_pb2, observer_pb2_grpc
    from hubblepy.cli.connection import (
        HEALTH_SERVICE_NAME,
        LiveError,
        dial,
        hangup,
        parse_live_flags,
        rpc_error_line,
    )

    values, _, conn = parse_live_flags(FlagSet(STATUS_FLAGS), argv, env)
    output = values.get("output", "compact")
    if output not in OUTPUTS:
        raise LiveError(f"invalid output format: {output}")
    channel = dial(conn)
    try:
        try:
            hc = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=HEALTH_SERVICE_NAME), timeout=conn.request_timeout_s
            )
        except grpc.RpcError as exc:
            raise LiveError(f"failed getting status: {rpc_error_line(exc)}") from None
        healthy = hc.status == health_pb2.HealthCheckResponse.SERVING
        status_text = (
            "Ok"
            if healthy
            else f"Unavailable: {health_pb2.HealthCheckResponse.ServingStatus.Name(hc.status)}"
        )
        if output == "compact":
            out.write(f"Healthcheck (via {conn.server}): {status_text}\n")
        if not healthy:
            raise LiveError("not healthy")
        try:
            ss, call = observer_pb2_grpc.ObserverStub(channel).ServerStatus.with_call(
                observer_pb2.ServerStatusRequest(), timeout=conn.request_timeout_s
            )
        except grpc.RpcError as exc:
            raise LiveError(f"failed to get hubble server status: {rpc_error_line(exc)}") from None
        if output in ("json", "JSON", "jsonpb"):
            from hubblepy.codec import encode, message_to_dict

            out.write(encode(message_to_dict(ss)).decode() + "\n")
        else:
            out.write(format_status(ss, output, lost=_lost_counts(call)))
    finally:
        hangup(channel)
    return 0


def _lost_counts(call: Any) -> dict[str, int]:
    """A hubblepy node's lost-event counts from the ServerStatus trailer ({} from other servers)."""
    from hubblepy.observer.service import LOST_EVENTS_METADATA, parse_lost_counts

    for key, value in call.trailing_metadata() or ():
        if key == LOST_EVENTS_METADATA and isinstance(value, str):
            return parse_lost_counts(value)
    return {}


def group_thousands(n: int) -> str:
    """``8190`` -> ``8,190`` (Go hubble's uint64Grouping)."""
    return f"{n:,}"


def _rate(ss: Any) -> str:
    return f"{ss.flows_rate:.2f}" if ss.flows_rate > 0 else "N/A"


def _optional_count(ss: Any, field: str) -> str:
    return str(getattr(ss, field).value) if ss.HasField(field) else "N/A"


def format_compact(ss: Any, lost: dict[str, int] | None = None) -> str:
    """The default output (after the ``Healthcheck`` line)."""
    lines = []
    ratio = f" ({ss.num_flows / ss.max_flows * 100:.2f}%)" if ss.max_flows > 0 else ""
    lines.append(f"Current/Max Flows: {group_thousands(ss.num_flows)}/{group_thousands(ss.max_flows)}{ratio}")
    per_sec = _rate(ss)
    if per_sec == "N/A" and ss.uptime_ns > 0:
        per_sec = f"{ss.seen_flows / (ss.uptime_ns / 1e9):.2f}"
    lines.append(f"Flows/s: {per_sec}")
    if ss.HasField("num_connected_nodes"):
        total = ""
        if ss.HasField("num_unavailable_nodes"):
            total = f"/{ss.num_unavailable_nodes.value + ss.num_connected_nodes.value}"
        lines.append(f"Connected Nodes: {ss.num_connected_nodes.value}{total}")
    if ss.HasField("num_unavailable_nodes") and ss.num_unavailable_nodes.value > 0:
        names = sorted(ss.unavailable_nodes)
        count = ss.num_unavailable_nodes.value
        if names:
            if count > len(names):
                names.append(f"and {count - len(names)} more...")
            lines.append(f"Unavailable Nodes: {count}\n  - " + "\n  - ".join(names))
        else:
            lines.append(f"Unavailable Nodes: {count}")
    lines.extend(_lost_lines(lost or {}))
    return "".join(line + "\n" for line in lines)


def _lost_lines(lost: dict[str, int]) -> list[str]:
    """hubblepy's lost-event counts, when the server sends them (upstream servers never do)."""
    out = []
    for key, title in (
        ("lost_perf_events", "Lost Events (perf buffer)"),
        ("ring_overwritten", "Ring Overwritten"),
        ("ring_readers_lost", "Lost Events (slow readers)"),
    ):
        if lost.get(key):
            out.append(f"{title}: {group_thousands(lost[key])}")
    return out


def format_dict(ss: Any) -> str:
    """``-o dict``: one ``KEY: value`` line per field, keys right-aligned."""
    rows = [
        ("          NUM FLOWS: ", group_thousands(ss.num_flows)),
        ("          MAX FLOWS: ", group_thousands(ss.max_flows)),
        ("         SEEN FLOWS: ", group_thousands(ss.seen_flows)),
        ("   FLOWS PER SECOND: ", _rate(ss)),
        ("             UPTIME: ", format_go_duration(ss.uptime_ns)),
        ("NUM CONNECTED NODES: ", _optional_count(ss, "num_connected_nodes")),
        (" NUM UNAVAIL. NODES: ", _optional_count(ss, "num_unavailable_nodes")),
        ("            VERSION: ", ss.version),
    ]
    return "".join(key + value + "\n" for key, value in rows)


def format_table(ss: Any) -> str:
    """``-o table``: a header row and a value row, aligned as Go's tabwriter does."""
    from hubblepy.printer.tabwriter import tabwrite

    header = [
        "NUM FLOWS", "MAX FLOWS", "SEEN FLOWS", "FLOWS PER SECOND", "UPTIME",
        "NUM CONNECTED NODES", "NUM UNAVAILABLE NODES", "VERSION",
    ]  # fmt: skip
    values = [
        group_thousands(ss.num_flows),
        group_thousands(ss.max_flows),
        group_thousands(ss.seen_flows),
        _rate(ss),
        format_go_duration(ss.uptime_ns),
        _optional_count(ss, "num_connected_nodes"),
        _optional_count(ss, "num_unavailable_nodes"),
        ss.version,
    ]
    return tabwrite([header, values])


def format_status(ss: Any, output: str = "compact", lost: dict[str, int] | None = None) -> str:
    """The response in ``output`` (one of :data:`OUTPUTS` other than the JSON ones); ``lost``: a
    hubblepy node's lost-event counts (compact form only)."""
    if output == "dict":
        return format_dict(ss)
    if output in ("tab", "table"):
        return format_table(ss)
    return format_compact(ss, lost)
