"""`hubble observe` against a server or relay: the GetFlows request, the stream, the printer.

Our nodes and relay offer ``hubblepy.Batch/GetFlowsJSON`` (batches of the canonical JSON lines
`-o json` prints), which saves decoding protobuf per flow; any other server answers UNIMPLEMENTED
and is read with the standard ``observer.Observer/GetFlows``. ``--jq`` runs on each record's JSON
as it does for a file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, BinaryIO, TextIO, cast

import grpc  # noqa: E402, I001 - after connection, which quiets gRPC's own logging

from hubblepy.api.observer import observer_pb2  # noqa: E402
from hubblepy.cli.connection import (
    LiveError,
    catch_interrupts,
    dial,
    exit_after_interrupt,
    hangup,
    rpc_error_line,
)

STRICT_LAST_KEY = "hubblepy-strict-last"
COMPLETENESS_KEY = "hubblepy-completeness"
GET_FLOWS = "/observer.Observer/GetFlows"
GET_FLOWS_JSON = "/hubblepy.Batch/GetFlowsJSON"


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
    # An explicit --field-mask is sent; upstream's default mask for compact/dict/table lacks fields
    # those formats print (e.g. traffic_direction, policy_match_type), so it is sent only when
    # --use-default-field-masks is given on the command line.
    mask = list(args.field_mask)
    if not mask and args.output != "json" and "use-default-field-masks" in getattr(args, "changed", ()):
        from hubblepy.cli.observe_args import DEFAULT_FIELD_MASK

        mask = list(DEFAULT_FIELD_MASK) if args.use_default_field_masks else []
    if mask:
        req.field_mask.paths.extend(mask)
    return req


def wants_strict_last(args: Any, env: Mapping[str, str]) -> bool:
    """Strict global --last: ``args.strict_last`` or env ``HUBBLEPY_STRICT_LAST=1``, non-follow --last only."""
    asked = bool(getattr(args, "strict_last", False)) or env.get("HUBBLEPY_STRICT_LAST", "") in ("1", "true")
    return asked and not args.follow and not args.first_mode and args.number not in (0, (1 << 64) - 1)


class JqSink:
    """A printer-like sink that runs a jq program on each record and prints its results."""

    def __init__(self, program: Any, stdout: BinaryIO, stderr: TextIO) -> None:
        self.program = program
        self.stdout = stdout
        self.stderr = stderr
        self.failures = 0

    def write(self, record: dict, raw: bytes | None = None) -> None:
        from hubblepy.cli.jqrun import jq_results
        from hubblepy.codec import encode_response

        text = (raw if raw is not None else encode_response(record)).decode()
        lines, error = jq_results(self.program, text)
        if lines:
            self.stdout.write(b"".join(lines))
        if error is not None:
            self.failures += 1
            self.stdout.flush()
            from hubblepy.cli.slog import warn

            warn(self.stderr, "jq program failed on a record", error=error)

    def flush(self) -> None:
        self.stdout.flush()

    def close(self) -> None:
        self.stdout.flush()


def run_live_observe(
    args: Any,
    stdout: BinaryIO,
    stderr: TextIO,
    env: Mapping[str, str] | None = None,
    jq_program: Any = None,
) -> int:
    """`hubble observe` against a server: send the request, print every response; returns the exit status."""
    from hubblepy.printer import Printer
    from hubblepy.printer.options import observe_print_options

    env = os.environ if env is None else env
    err_bin = cast(BinaryIO, stderr.buffer if hasattr(stderr, "buffer") else stderr)
    try:
        channel = dial(args.connection)
    except LiveError as exc:
        stderr.write(f"{exc}\n")
        return 1
    request = build_flows_request(args)
    catch_interrupts()
    strict = wants_strict_last(args, env)
    metadata = ((STRICT_LAST_KEY, "1"),) if strict else None
    if jq_program is not None:
        printer: Any = JqSink(jq_program, stdout, stderr)
    else:
        printer = Printer(observe_print_options(args, stdout), stdout, err_bin)
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
        exit_after_interrupt()
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
        hangup(channel)
    if isinstance(printer, JqSink) and printer.failures and not status:
        stderr.write(f"the jq program failed on {printer.failures} record(s)\n")
        status = 1
    return status


def stream_records(
    channel: grpc.Channel, request: Any, metadata: Any, printer: Any, follow: bool, calls: list[Any]
) -> None:
    """Print every response of GetFlows (flushing after each message in follow mode)."""
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
