"""`hubble policy`: policy tools that read flows. ``audit-report`` lists what enforcement would break.

``hubble policy audit-report`` reads flows with verdict AUDIT, live from a Hubble server or relay
(``--server``, default ``$HUBBLE_SERVER`` or localhost:4245, through the Observer API with a
``verdict: AUDIT`` filter) or from a file of ``hubble observe -o json`` lines (``--input-file``,
``-`` for stdin), and groups them by source, destination, port and direction with counts, first and
last seen and the policies that would deny them (:class:`hubblepy.policy.audit.AuditReport`).
The lead wires this in with ``register(app)``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import typer

policy_app = typer.Typer(
    name="policy",
    help="Policy tools over flows: what audit mode says enforcement would break.",
    no_args_is_help=True,
    add_completion=False,
)

ALL = (1 << 64) - 1  # GetFlowsRequest.number meaning "everything the ring holds"


@policy_app.callback()
def _group() -> None:
    """Policy tools over flows: what audit mode says enforcement would break."""


def register(app: typer.Typer) -> None:
    """Adds the ``policy`` command group to the ``hubble`` application."""
    app.add_typer(policy_app, name="policy")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"hubble policy: {message}", err=True)
    return typer.Exit(1)


def _filters(namespace: str) -> list[dict]:
    """Whitelist FlowFilters (canonical dicts): AUDIT verdicts, optionally touching one namespace."""
    if not namespace:
        return [{"verdict": ["AUDIT"]}]
    pods = [f"{namespace}/"]
    return [{"source_pod": pods, "verdict": ["AUDIT"]}, {"destination_pod": pods, "verdict": ["AUDIT"]}]


def _from_server(server: str, namespace: str, last: int, timeout: float, report: Any) -> None:
    import grpc

    from hubblepy.api.flow import flow_pb2
    from hubblepy.api.observer import observer_pb2, observer_pb2_grpc
    from hubblepy.cli.live import Connection, LiveError, dial, rpc_error_line
    from hubblepy.codec import dict_to_message, message_to_dict

    request = observer_pb2.GetFlowsRequest(number=last or ALL)
    for f in _filters(namespace):
        request.whitelist.append(dict_to_message(f, flow_pb2.FlowFilter))
    try:
        channel = dial(Connection(server=server, timeout_s=timeout))
    except LiveError as exc:
        raise _fail(str(exc)) from None
    try:
        stub = observer_pb2_grpc.ObserverStub(channel)
        for response in stub.GetFlows(request, timeout=max(timeout, 30.0)):
            if response.HasField("flow"):
                report.add(message_to_dict(response.flow))
    except grpc.RpcError as exc:
        raise _fail(rpc_error_line(exc)) from None
    finally:
        channel.close()


def _from_file(path: str, namespace: str, report: Any) -> None:
    from hubblepy.cli.file_input import InputError, iter_line_batches, open_input
    from hubblepy.codec import DecodeError, ResponseDecoder

    decoder = ResponseDecoder()
    prefix = f"{namespace}/" if namespace else ""
    try:
        stream = open_input(path, sys.stdin.buffer)
    except InputError as exc:
        raise _fail(str(exc)) from None
    number = 0
    try:
        for batch in iter_line_batches(stream):
            for line in batch:
                number += 1
                if not line.strip():
                    continue
                try:
                    response = decoder.decode(line)
                except DecodeError as exc:
                    raise _fail(f"{path}: line {number}: {exc}") from None
                flow = response.get("flow")
                if flow is None:
                    continue
                if prefix and not any(
                    f"{(flow.get(side) or {}).get('namespace', '')}/".startswith(prefix)
                    for side in ("source", "destination")
                ):
                    continue
                report.add(flow)
    except InputError as exc:
        raise _fail(str(exc)) from None
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


@policy_app.command("audit-report")
def audit_report(
    server: str = typer.Option(
        "", "--server", help="Hubble server or relay (default: $HUBBLE_SERVER or localhost:4245)"
    ),
    input_file: str = typer.Option(
        "", "--input-file", help="read `hubble observe -o json` lines from this file ('-' for stdin)"
    ),
    namespace: str = typer.Option("", "--namespace", help="only flows from or to this namespace"),
    last: int = typer.Option(0, "--last", help="read at most this many AUDIT flows (0: all the server has)"),
    output: str = typer.Option("table", "--output", "-o", help="table or json"),
    timeout: float = typer.Option(5.0, "--timeout", help="seconds to wait for the server connection"),
) -> None:
    """What would break if enforcement were turned on: AUDIT verdicts by source, destination and port."""
    from hubblepy.policy.audit import AuditReport

    if output not in ("table", "json"):
        raise _fail(f"unknown output format {output!r} (table, json)")
    if server and input_file:
        raise _fail("--server and --input-file cannot be used together")
    if last < 0:
        raise _fail("--last must be 0 or more")
    report = AuditReport()
    if input_file:
        _from_file(input_file, namespace, report)
    else:
        _from_server(
            server or os.environ.get("HUBBLE_SERVER") or "localhost:4245", namespace, last, timeout, report
        )
    if output == "json":
        import json

        typer.echo(json.dumps(report.to_json(), indent=2))
    else:
        typer.echo(report.table(), nl=False)


def main() -> None:
    """``python -m hubblepy.cli.policy ...``: the policy commands on their own."""
    policy_app(prog_name="hubble policy")


if __name__ == "__main__":
    main()


__all__ = ["policy_app", "register"]
