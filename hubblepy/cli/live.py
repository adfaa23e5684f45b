"""Live commands against a Hubble server or relay: observe, status, list nodes/namespaces, watch peers.

Connection rules follow upstream: ``--server`` (default ``localhost:4245``, env ``HUBBLE_SERVER``,
config key ``server``); a ``tls://`` prefix or ``--tls`` means TLS; ``--timeout`` bounds the dial
and ``--request-timeout`` bounds unary calls. ``--tls-allow-insecure`` trusts whatever certificate
the server presents (see :mod:`hubblepy.cli.live_tls`). An unreachable server gives one line and exit 1
within the dial timeout; Ctrl-C ends any command with exit 0.

Entry points for the CLI app:

* :func:`run_live_observe` (called by ``hubble observe`` without ``--input-file``);
* :func:`status_main`, :func:`list_main`, :func:`watch_main` take the words after the command.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO, NoReturn, TextIO, cast

# gRPC core writes handshake failures and the like straight to stderr; the CLI reports errors in one
# line of its own, so keep the core quiet unless the user asks for its logs.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import grpc  # noqa: E402

from hubblepy.api.observer import observer_pb2  # noqa: E402

STRICT_LAST_KEY = "hubblepy-strict-last"
GET_FLOWS = "/observer.Observer/GetFlows"
GET_FLOWS_JSON = "/hubblepy.Batch/GetFlowsJSON"
COMPLETENESS_KEY = "hubblepy-completeness"
NODE_REASONS_KEY = "hubblepy-node-reasons"
TLS_PREFIX = "tls://"
HEALTH_SERVICE_NAME = "hubble.server.Observer"
DEFAULT_SERVER = "localhost:4245"
# Upstream's default GetFlowsRequest.field_mask for compact/dict/table output.
DEFAULT_FIELD_MASK = (
    "time", "verdict", "ethernet", "IP", "l4", "source.identity", "source.namespace", "source.pod_name",
    "destination.identity", "destination.namespace", "destination.pod_name", "Type", "node_name", "l7",
    "event_type", "source_service", "destination_service", "is_reply", "Summary", "ip_trace_id",
)  # fmt: skip


class LiveError(Exception):
    """An error that ends a live command with one line on stderr and exit status 1."""


@dataclass
class Connection:
    """How to reach the server (the subset of ObserveArgs the connection needs)."""

    server: str = DEFAULT_SERVER
    timeout_s: float = 5.0
    request_timeout_s: float = 12.0
    tls: bool = False
    tls_allow_insecure: bool = False
    tls_ca_cert_files: list[str] = field(default_factory=list)
    tls_client_cert_file: str = ""
    tls_client_key_file: str = ""
    tls_server_name: str = ""

    @classmethod
    def from_args(cls, args: Any) -> Connection:
        return cls(
            server=args.server,
            timeout_s=args.timeout_ns / 1e9,
            request_timeout_s=args.request_timeout_ns / 1e9,
            tls=args.tls,
            tls_allow_insecure=args.tls_allow_insecure,
            tls_ca_cert_files=list(args.tls_ca_cert_files),
            tls_client_cert_file=args.tls_client_cert_file,
            tls_client_key_file=args.tls_client_key_file,
            tls_server_name=args.tls_server_name,
        )


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise LiveError(f"open {path}: {(exc.strerror or 'error').lower()}") from None


def dial(conn: Connection) -> grpc.Channel:
    """Open a channel and wait (up to the dial timeout) until it is connected."""
    target = conn.server
    use_tls = conn.tls or target.startswith(TLS_PREFIX)
    target = target.removeprefix(TLS_PREFIX)
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", 64 << 20),
        ("grpc.enable_retries", 0),
    ]
    if use_tls:
        key = _read(conn.tls_client_key_file) if conn.tls_client_key_file else None
        cert = _read(conn.tls_client_cert_file) if conn.tls_client_cert_file else None
        if conn.tls_allow_insecure:
            presented = _presented_certificate(conn, target)
            roots: bytes | None = presented.pem
            options.append(("grpc.ssl_target_name_override", presented.name))
        else:
            roots = b"".join(_read(p) for p in conn.tls_ca_cert_files) or None
            if conn.tls_server_name:
                options.append(("grpc.ssl_target_name_override", conn.tls_server_name))
        channel = grpc.secure_channel(
            target,
            grpc.ssl_channel_credentials(roots, private_key=key, certificate_chain=cert),
            options=options,
        )
    else:
        channel = grpc.insecure_channel(target, options=options)
    try:
        grpc.channel_ready_future(channel).result(timeout=conn.timeout_s)
    except grpc.FutureTimeoutError:
        channel.close()
        raise LiveError(f"failed to connect to '{conn.server}': context deadline exceeded") from None
    return channel


def _presented_certificate(conn: Connection, target: str) -> Any:
    """``--tls-allow-insecure``: the server's own certificate, fetched without verification."""
    from hubblepy.cli.live_tls import ProbeError, fetch_server_certificate

    try:
        return fetch_server_certificate(
            target, conn.timeout_s, conn.tls_client_cert_file, conn.tls_client_key_file
        )
    except ProbeError as exc:
        raise LiveError(str(exc)) from None


def rpc_error_line(exc: grpc.RpcError) -> str:
    """Upstream's wording for gRPC errors: ``rpc error: code = X desc = ...``."""
    from relay.service import rpc_error_text

    return rpc_error_text(exc)


# -- hubble observe (live) -----------------------------------------------------------------------


def build_flows_request(args: Any) -> Any:
    """The GetFlowsRequest for parsed observe arguments (filters go to the server)."""
    from hubblepy.api.flow import flow_pb2
    from hubblepy.codec import dict_to_message

    req = observer_pb2.GetFlowsRequest(number=args.number, first=args.first_mode, follow=args.follow)
    for f in args.allow:
        req.whitelist.append(dict_to_message(f, flow_pb2.FlowFilter))
    for f in args.deny:
        req.blacklist.append(dict_to_message(f, flow_pb2.FlowFilter))
    if args.since_ns is not None:
        req.since.FromNanoseconds(args.since_ns)
    if args.until_ns is not None and not args.follow:
        req.until.FromNanoseconds(args.until_ns)
    # Only an explicit --field-mask is sent: upstream's default mask for compact/dict/table
    # (DEFAULT_FIELD_MASK) lacks fields those formats print (e.g. traffic_direction, policy_match_type).
    mask = list(args.field_mask)
    if mask:
        req.field_mask.paths.extend(mask)
    return req


def wants_strict_last(args: Any, env: Mapping[str, str]) -> bool:
    """Strict global --last: ``args.strict_last`` or env ``HUBBLEPY_STRICT_LAST=1``, non-follow --last only."""
    asked = bool(getattr(args, "strict_last", False)) or env.get("HUBBLEPY_STRICT_LAST", "") in ("1", "true")
    return asked and not args.follow and not args.first_mode and args.number not in (0, (1 << 64) - 1)


def run_live_observe(
    args: Any, stdout: BinaryIO, stderr: TextIO, env: Mapping[str, str] | None = None
) -> int:
    """`hubble observe` against a server: send the request, print every response; returns the exit status."""
    from hubblepy.printer import Printer

    env = os.environ if env is None else env
    err_bin = cast(BinaryIO, stderr.buffer if hasattr(stderr, "buffer") else stderr)
    try:
        channel = dial(Connection.from_args(args))
    except LiveError as exc:
        stderr.write(f"{exc}\n")
        return 1
    request = build_flows_request(args)
    strict = wants_strict_last(args, env)
    metadata = ((STRICT_LAST_KEY, "1"),) if strict else None
    from hubblepy.cli.observe import print_options

    printer = Printer(print_options(args, stdout), stdout, err_bin)
    calls: list[Any] = []
    status = 0
    try:
        stream_records(channel, request, metadata, printer, args.follow, calls)
        if strict:
            summary = dict(calls[-1].trailing_metadata() or ()).get(COMPLETENESS_KEY)
            printer.close()
            stdout.flush()
            stderr.write(_completeness_line(args.number, summary) + "\n")
    except KeyboardInterrupt:
        for call in calls:
            call.cancel()
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.CANCELLED:
            printer.close()
            stdout.flush()
            stderr.write(rpc_error_line(exc) + "\n")
            status = 1
    finally:
        try:
            printer.close()
            stdout.flush()
        except (BrokenPipeError, ValueError):
            pass
        channel.close()
    return status


def stream_records(
    channel: grpc.Channel, request: Any, metadata: Any, printer: Any, follow: bool, calls: list[Any]
) -> None:
    """Print every response of GetFlows.

    Our nodes and relay offer ``hubblepy.Batch/GetFlowsJSON`` (batches of the canonical JSON lines
    `-o json` prints), which saves decoding protobuf per flow; any other server answers
    UNIMPLEMENTED and is read with the standard ``observer.Observer/GetFlows``. In follow mode the
    output is flushed after every message so flows appear as they come.
    """
    import orjson

    from hubblepy.codec import message_to_dict

    serialize = observer_pb2.GetFlowsRequest.SerializeToString
    json_call = channel.unary_stream(GET_FLOWS_JSON, request_serializer=serialize, response_deserializer=None)
    call = json_call(request, metadata=metadata)
    calls.append(call)
    write = printer.write
    loads = orjson.loads
    received = False
    try:
        for message in call:
            received = True
            for line in message.splitlines():
                write(loads(line), line)
            if follow:
                printer.flush()
        return
    except grpc.RpcError as exc:
        if received or exc.code() != grpc.StatusCode.UNIMPLEMENTED:
            raise
    plain = channel.unary_stream(GET_FLOWS, request_serializer=serialize, response_deserializer=None)
    call = plain(request, metadata=metadata)
    calls.append(call)
    parse = observer_pb2.GetFlowsResponse.FromString
    for wire in call:
        write(message_to_dict(parse(wire)))
        if follow:
            printer.flush()


def _completeness_line(number: int, summary: str | None) -> str:
    if summary is None:
        return f"strict --last {number}: the server did not report completeness (not a hubblepy relay?)"
    fields = dict(part.split("=", 1) for part in summary.split() if "=" in part)
    return (
        f"strict --last {number}: {fields.get('flows', '?')} flows returned, "
        f"{fields.get('nodes_answered', '?')}/{fields.get('nodes_known', '?')} nodes answered, "
        f"{fields.get('lost', '?')} events lost"
    )


# -- shared flags of status / list / watch ---------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise LiveError(message)


def _server_parser(prog: str) -> argparse.ArgumentParser:
    p = _Parser(prog=prog, add_help=True)
    p.add_argument("--config", default=None)
    p.add_argument("-D", "--debug", action="store_true")
    p.add_argument("--server", default=None)
    p.add_argument("--timeout", default=None)
    p.add_argument("--request-timeout", default=None)
    p.add_argument("--tls", action="store_true", default=None)
    p.add_argument("--tls-allow-insecure", action="store_true", default=None)
    p.add_argument("--tls-ca-cert-files", default=None)
    p.add_argument("--tls-client-cert-file", default=None)
    p.add_argument("--tls-client-key-file", default=None)
    p.add_argument("--tls-server-name", default=None)
    return p


def connection_from_flags(ns: argparse.Namespace, env: Mapping[str, str]) -> Connection:
    """Resolve server flags like upstream: flag, then HUBBLE_* variable, then config file, then default."""
    from hubblepy.cli.config import Settings

    flags = {
        key: getattr(ns, key.replace("-", "_"))
        for key in (
            "server",
            "timeout",
            "request-timeout",
            "tls",
            "tls-allow-insecure",
            "tls-ca-cert-files",
            "tls-client-cert-file",
            "tls-client-key-file",
            "tls-server-name",
        )
        if getattr(ns, key.replace("-", "_")) is not None
    }
    if isinstance(flags.get("tls-ca-cert-files"), str):
        flags["tls-ca-cert-files"] = [p for p in flags["tls-ca-cert-files"].split(",") if p]
    settings = Settings(env, ns.config, flags)
    try:
        return Connection(
            server=settings.get("server"),
            timeout_s=settings.duration_s("timeout"),
            request_timeout_s=settings.duration_s("request-timeout"),
            tls=settings.boolean("tls"),
            tls_allow_insecure=settings.boolean("tls-allow-insecure"),
            tls_ca_cert_files=settings.string_list("tls-ca-cert-files"),
            tls_client_cert_file=settings.get("tls-client-cert-file"),
            tls_client_key_file=settings.get("tls-client-key-file"),
            tls_server_name=settings.get("tls-server-name"),
        )
    except ValueError as exc:
        raise LiveError(str(exc)) from None


def _run(
    func: Any, argv: list[str], env: Mapping[str, str] | None, out: TextIO | None, err: TextIO | None
) -> int:
    env = os.environ if env is None else env
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        return func(argv, env, out)
    except LiveError as exc:
        out.flush()
        err.write(f"{exc}\n")
        return 1
    except grpc.RpcError as exc:
        out.flush()
        err.write(rpc_error_line(exc) + "\n")
        return 1
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        return 0


# -- hubble status ------------------------------------------------------------------------------------


def status_main(
    argv: list[str],
    env: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """`hubble status [-o json]`."""
    return _run(_status, argv, env, out, err)


def _status(argv: list[str], env: Mapping[str, str], out: TextIO) -> int:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    p = _server_parser("hubble status")
    p.add_argument("-o", "--output", default="compact")
    ns = p.parse_args(argv)
    from hubblepy.cli.status import OUTPUTS, format_status

    if ns.output not in OUTPUTS:
        raise LiveError(f"invalid output format: {ns.output}")
    conn = connection_from_flags(ns, env)
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
        json_out = ns.output in ("json", "JSON", "jsonpb")
        if ns.output == "compact":
            out.write(f"Healthcheck (via {conn.server}): {status_text}\n")
        if not healthy:
            raise LiveError("not healthy")
        try:
            ss, call = _observer_stub(channel).ServerStatus.with_call(
                observer_pb2.ServerStatusRequest(), timeout=conn.request_timeout_s
            )
        except grpc.RpcError as exc:
            raise LiveError(f"failed to get hubble server status: {rpc_error_line(exc)}") from None
        if json_out:
            from hubblepy.codec import encode, message_to_dict

            out.write(encode(message_to_dict(ss)).decode() + "\n")
        else:
            out.write(format_status(ss, ns.output, lost=_lost_counts(call)))
    finally:
        channel.close()
    return 0


def _lost_counts(call: Any) -> dict[str, int]:
    """A hubblepy node's lost-event counts from the ServerStatus trailer ({} from other servers)."""
    from hubblepy.observer.service import LOST_EVENTS_METADATA, parse_lost_counts

    for key, value in call.trailing_metadata() or ():
        if key == LOST_EVENTS_METADATA and isinstance(value, str):
            return parse_lost_counts(value)
    return {}


def _observer_stub(channel: grpc.Channel) -> Any:
    from hubblepy.api.observer import observer_pb2_grpc

    return observer_pb2_grpc.ObserverStub(channel)


# -- hubble list nodes | namespaces ------------------------------------------------------------------

_NODE_STATES = {0: "Unknown", 1: "Connected", 2: "Unavailable", 3: "Gone", 4: "Error"}


def list_main(
    argv: list[str],
    env: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """`hubble list nodes|namespaces [-o table|wide|json]`."""
    return _run(_list, argv, env, out, err)


def _list(argv: list[str], env: Mapping[str, str], out: TextIO) -> int:
    if not argv or argv[0] not in ("nodes", "node", "namespaces"):
        raise LiveError('unknown command for "hubble list": expected "nodes" or "namespaces"')
    what, rest = argv[0], argv[1:]
    p = _server_parser(f"hubble list {what}")
    p.add_argument("-o", "--output", default="table")
    ns = p.parse_args(rest)
    if ns.output not in ("json", "table", "wide"):
        raise LiveError(f"unknown output format: {ns.output}")
    conn = connection_from_flags(ns, env)
    channel = dial(conn)
    try:
        stub = _observer_stub(channel)
        if what.startswith("node"):
            res, call = stub.GetNodes.with_call(
                observer_pb2.GetNodesRequest(), timeout=conn.request_timeout_s
            )
            nodes = sorted(res.nodes, key=lambda n: n.name)
            reasons = _node_reasons(call.trailing_metadata())
            if ns.output == "json":
                out.write(
                    _json_array(
                        nodes, [{"reason": reasons[n.address]} if n.address in reasons else {} for n in nodes]
                    )
                )
            else:
                out.write(format_nodes_table(nodes, ns.output == "wide", reasons))
        else:
            res = stub.GetNamespaces(observer_pb2.GetNamespacesRequest(), timeout=conn.request_timeout_s)
            items = list(res.namespaces)
            out.write(
                _json_array(items)
                if ns.output == "json"
                else format_namespaces_table(items, ns.output == "wide")
            )
    finally:
        channel.close()
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


def _go_duration(seconds: int) -> str:
    """Go's Duration.String() for a whole number of seconds."""
    if seconds == 0:
        return "0s"
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    if h:
        return f"{h}h{m}m{s}s"
    if m:
        return f"{m}m{s}s"
    return f"{s}s"


def tabwrite(rows: list[list[str]]) -> str:
    """Go tabwriter(minwidth 2, padding 3, ' '): every column but the last padded to max width + 3."""
    widths: list[int] = []
    for row in rows:
        for i, cell in enumerate(row[:-1]):
            if i >= len(widths):
                widths.append(0)
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in rows:
        parts = [cell.ljust(max(widths[i] + 3, 2)) for i, cell in enumerate(row[:-1])]
        parts.append(row[-1] if row else "")
        lines.append("".join(parts))
    return "".join(line + "\n" for line in lines)


def format_nodes_table(nodes: list[Any], wide: bool, reasons: Mapping[str, str] | None = None) -> str:
    """Upstream's node table.

    When a node is not connected and the relay said why, ``-o wide`` adds hubblepy's REASON column
    (otherwise the table is upstream's, byte for byte).
    """
    reasons = {n.address: reasons[n.address] for n in nodes if reasons and n.address in reasons}
    header = ["NAME", "STATUS", "AGE", "FLOWS/S", "CURRENT/MAX-FLOWS"]
    if wide:
        header += ["VERSION", "ADDRESS", "TLS"] + (["REASON"] if reasons else [])
    rows = [header]
    for n in nodes:
        age = flows_per_sec = "N/A"
        uptime_s = round(n.uptime_ns / 1e9)
        if uptime_s > 0:
            age = _go_duration(uptime_s)
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
    return tabwrite(rows)


# -- hubble watch peers ------------------------------------------------------------------------------


def watch_main(
    argv: list[str],
    env: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """`hubble watch peers`: print peer change notifications until interrupted."""
    return _run(_watch, argv, env, out, err)


def _watch(argv: list[str], env: Mapping[str, str], out: TextIO) -> int:
    from hubblepy.api.peer import peer_pb2, peer_pb2_grpc

    if not argv or argv[0] not in ("peers", "peer"):
        raise LiveError('unknown command for "hubble watch": expected "peers"')
    ns = _server_parser("hubble watch peers").parse_args(argv[1:])
    conn = connection_from_flags(ns, env)
    channel = dial(conn)
    stream = peer_pb2_grpc.PeerStub(channel).Notify(peer_pb2.NotifyRequest())
    try:
        for note in stream:
            out.write(format_peer_change(note))
            out.flush()
    except KeyboardInterrupt:
        stream.cancel()
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.CANCELLED:
            raise
    finally:
        channel.close()
    return 0


def format_peer_change(note: Any) -> str:
    from hubblepy.api.peer import peer_pb2

    tls = f" (TLS.ServerName: {note.tls.server_name})" if note.HasField("tls") else ""
    kind = peer_pb2.ChangeNotificationType.Name(note.type) if note.type in (0, 1, 2, 3) else str(note.type)
    return f"{kind:<12} {note.address} {note.name}{tls}\n"
