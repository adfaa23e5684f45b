"""`hubble observe agent-events` and `hubble observe debug-events`, as upstream's sub-commands.

They ask the server for its agent events (policy updates, endpoints created or deleted, agent
start...) or datapath debug events, with the selector, formatting and server flags of `observe`,
and print them as upstream does (``--first N`` is honoured too: the API has the field, where
upstream's client leaves it unset). A server that does not offer them answers ``Unimplemented``:
the command prints upstream's ``rpc error: code = Unimplemented desc = ...`` and exits 1.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, BinaryIO, TextIO

from hubblepy.cli.connection_flags import GLOBAL_FLAGS, SERVER_FLAGS
from hubblepy.cli.help import render_help
from hubblepy.cli.observe_flags import FORMATTING, OTHER_FLAGS, SELECTORS
from hubblepy.cli.pflag import FlagSet, HelpRequested, UsageError

DEFAULT_LAST = 20  # upstream's defaults.EventsPrintCount
KINDS = {
    "agent-events": (
        "Observe the agent's events (policy updates, endpoints created or deleted, ...)",
        "GetAgentEvents",
    ),
    "debug-events": ("Observe the datapath's debug events", "GetDebugEvents"),
}
_FORMATTING = ("output", "print-node-name", "time-format")


def event_flags() -> list[Any]:
    specs = [s for s in OTHER_FLAGS if s.group == SELECTORS or s.name in _FORMATTING]
    return [*specs, *SERVER_FLAGS, *GLOBAL_FLAGS]


def events_help(kind: str) -> str:
    return render_help(
        KINDS[kind][0] + ".",
        [f"hubble observe {kind} [flags]"],
        event_flags(),
        (SELECTORS, FORMATTING, "Server Flags", "Global Flags"),
    )


def main(kind: str, argv: list[str], env: Mapping[str, str] | None = None) -> int:
    """Run ``hubble observe KIND ARGV``; returns the exit status."""
    from hubblepy.cli.connection import LiveError

    env = os.environ if env is None else env
    try:
        return run(kind, argv, env, sys.stdout.buffer, sys.stderr)
    except HelpRequested:
        sys.stdout.write(events_help(kind))
        return 0
    except (UsageError, LiveError) as exc:
        sys.stdout.flush()
        sys.stderr.write(f"{exc}\n")
        return 1
    except KeyboardInterrupt:
        return 0


def build_request(kind: str, values: Any, now: datetime | None = None) -> Any:
    """The GetAgentEvents/GetDebugEventsRequest upstream sends for these flags."""
    from hubblepy.api.observer import observer_pb2
    from hubblepy.cli.timeparse import TimeParseError, parse_time_bound

    follow = bool(values.get("follow", False))
    last = int(values.get("last", 0))
    first = int(values.get("first", 0))
    for clash, given in (("--last", last), ("--all", values.get("all", False)), ("--follow", follow)):
        if first and given:
            raise UsageError(f"cannot set both --first and {clash}")
    if last and values.get("all", False):
        raise UsageError("cannot set both --last and --all")
    now = datetime.now(UTC) if now is None else now
    bounds: dict[str, int] = {}
    for name in ("since", "until"):
        text = values.get(name, "")
        if not text or (name == "until" and follow):
            continue
        try:
            bounds[name] = parse_time_bound(text, now)
        except TimeParseError as exc:
            raise UsageError(f"failed to parse the {name} time: {exc}") from None
    if first:
        last = first
    elif not bounds:
        if values.get("all", False):
            last = (1 << 64) - 1
        elif last == 0:
            last = DEFAULT_LAST
    message = (
        observer_pb2.GetAgentEventsRequest if kind == "agent-events" else observer_pb2.GetDebugEventsRequest
    )
    request = message(number=last, follow=follow, first=bool(first))
    if "since" in bounds:
        request.since.FromNanoseconds(bounds["since"])
    if "until" in bounds:
        request.until.FromNanoseconds(bounds["until"])
    return request


def run(kind: str, argv: list[str], env: Mapping[str, str], stdout: BinaryIO, stderr: TextIO) -> int:
    from hubblepy.cli.connection import connection_from_flags, dial, hangup, rpc_error_line

    values, _ = FlagSet(event_flags()).parse(argv)
    if values.get("help"):
        raise HelpRequested()
    output = values.get("output", "compact")
    if output in ("json", "JSON", "jsonpb"):
        output = "json"
    elif output == "tab":
        output = "table"
    elif output not in ("compact", "dict", "table"):
        raise UsageError(f"invalid output format: {output}")
    if output == "table" and values.get("follow", False):
        raise UsageError("table output format is not compatible with follow mode")
    request = build_request(kind, values)
    conn = connection_from_flags(values, env)
    import grpc

    from hubblepy.api.observer import observer_pb2_grpc

    channel = dial(conn)
    printer = _EventPrinter(kind, output, values, stdout)
    try:
        stub = observer_pb2_grpc.ObserverStub(channel)
        method = getattr(stub, KINDS[kind][1])
        for resp in method(request):
            printer.write(resp)
    except grpc.RpcError as exc:
        printer.close()
        if exc.code() == grpc.StatusCode.CANCELLED:
            return 0
        stderr.write(rpc_error_line(exc) + "\n")
        return 1
    finally:
        hangup(channel)
    printer.close()
    return 0


class _EventPrinter:
    def __init__(self, kind: str, output: str, values: Any, stdout: BinaryIO) -> None:
        from hubblepy.codec.timestamps import format_ns
        from hubblepy.printer.events import EventText
        from hubblepy.printer.timefmt import make_timestamp_formatter

        fmt = make_timestamp_formatter(values.get("time-format", "StampMilli"))

        def stamp(ts: Any) -> str:
            return fmt(format_ns(ts.ToNanoseconds())) if ts.ByteSize() else fmt(None)

        self.kind = kind
        self.output = output
        self.stdout = stdout
        self.text = EventText(output, stamp, bool(values.get("print-node-name", False)))
        self.rows: list[list[str]] = []

    def write(self, resp: Any) -> None:
        if self.output == "json":
            from hubblepy.codec import encode, message_to_dict

            self.stdout.write(encode(message_to_dict(resp)) + b"\n")
            return
        text = self.text.agent(resp) if self.kind == "agent-events" else self.text.debug(resp)
        if isinstance(text, list):
            self.rows.extend(text)  # type: ignore[arg-type]
        else:
            self.stdout.write(text.encode())
            self.stdout.flush()

    def close(self) -> None:
        if self.rows:
            from hubblepy.printer.tabwriter import tabwrite

            self.stdout.write(tabwrite(self.rows).encode())
            self.rows = []
        self.stdout.flush()
