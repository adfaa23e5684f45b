"""`hubble policy`: policy tools. ``audit-report`` lists what enforcement would break; ``validate``
checks policy files offline through the same loader the lab uses.

``hubble policy audit-report`` reads flows with verdict AUDIT, live from a Hubble server or relay
(``--server``, default ``$HUBBLE_SERVER`` or localhost:4245, through the Observer API with a
``verdict: AUDIT`` filter) or from a file of ``hubble observe -o json`` lines (``--input-file``,
``-`` for stdin), and groups them by source, destination, port and direction with counts, first and
last seen and the policies that would deny them (:class:`hubblepy.policy.audit.AuditReport`).
Sources and destinations are workloads (Deployment, StatefulSet... names) or, with ``--by pod``,
pods; audited egress to destinations outside the cluster is summed up by DNS name when known.
Output: a table, ``-o csv`` (header row) or ``-o json``. When no flow matched, the command says so
on stderr and exits 1: an empty report is no evidence that enforcement would break nothing.
``--since``/``--until`` bound the flows' times as in ``hubble observe`` (sent in the request to a
server, applied line by line to a file). The server connection takes the live CLI's flags and
settings (``--tls`` and friends, ``--timeout``, ``HUBBLE_*`` variables, the config file) through
:func:`hubblepy.cli.connection.connection_from_mapping` and :func:`hubblepy.cli.connection.dial`.
The lead wires this in with ``register(app)``.
"""

from __future__ import annotations

import io
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

policy_app = typer.Typer(
    name="policy",
    help="Policy tools over flows: what audit mode says enforcement would break, policies to allow it.",
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


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """``--since``/``--until`` as ns since the epoch (None: unbounded)."""

    since_ns: int | None = None
    until_ns: int | None = None

    def holds(self, stamp_ns: int) -> bool:
        if self.since_ns is not None and stamp_ns < self.since_ns:
            return False
        return self.until_ns is None or stamp_ns <= self.until_ns


def _time_window(since: str, until: str) -> TimeWindow:
    """Parses ``--since``/``--until`` like ``hubble observe`` (durations count back from now)."""
    from hubblepy.cli.timeparse import TimeParseError, parse_time_bound

    now = datetime.now(UTC)
    bounds: dict[str, int | None] = {"since": None, "until": None}
    for name, value in (("since", since), ("until", until)):
        if not value:
            continue
        try:
            bounds[name] = parse_time_bound(value, now)
        except TimeParseError as exc:
            raise _fail(f"failed to parse the {name} time: {exc}") from None
    window = TimeWindow(bounds["since"], bounds["until"])
    if window.since_ns is not None and window.until_ns is not None and window.since_ns > window.until_ns:
        raise _fail("--since is later than --until")
    return window


def _connection(flags: dict[str, Any]) -> Any:
    """The live CLI's connection settings: flag, then ``HUBBLE_*`` variable, then config file."""
    from hubblepy.cli.connection import LiveError, connection_from_mapping

    try:
        return connection_from_mapping(flags, os.environ)
    except LiveError as exc:
        raise _fail(str(exc)) from None


def _from_server(conn: Any, namespace: str, last: int, window: TimeWindow, report: Any) -> int:
    """Adds the server's AUDIT flows to ``report``; returns how many flows were read."""
    import grpc

    from hubblepy.api.flow import flow_pb2
    from hubblepy.api.observer import observer_pb2, observer_pb2_grpc
    from hubblepy.cli.connection import LiveError, dial, hangup, rpc_error_line
    from hubblepy.codec import dict_to_message, message_to_dict

    request = observer_pb2.GetFlowsRequest(number=last or ALL)
    if window.since_ns is not None:
        request.since.FromNanoseconds(window.since_ns)
    if window.until_ns is not None:
        request.until.FromNanoseconds(window.until_ns)
    for f in _filters(namespace):
        request.whitelist.append(dict_to_message(f, flow_pb2.FlowFilter))
    try:
        channel = dial(conn)
    except LiveError as exc:
        raise _fail(str(exc)) from None
    read = 0
    try:
        stub = observer_pb2_grpc.ObserverStub(channel)
        for response in stub.GetFlows(request, timeout=max(conn.timeout_s, 30.0)):
            if response.HasField("flow"):
                read += 1
                report.add(message_to_dict(response.flow))
    except grpc.RpcError as exc:
        raise _fail(rpc_error_line(exc)) from None
    finally:
        hangup(channel)
    return read


def _from_file(path: str, namespace: str, window: TimeWindow, report: Any) -> int:
    """Adds the file's matching AUDIT flows to ``report``; returns how many flows were read."""
    from hubblepy.cli.file_input import InputError, iter_line_batches, open_input
    from hubblepy.cli.timeparse import TimeParseError, parse_rfc3339_ns
    from hubblepy.codec import DecodeError, ResponseDecoder

    decoder = ResponseDecoder()
    prefix = f"{namespace}/" if namespace else ""
    try:
        stream = open_input(path, sys.stdin.buffer)
    except InputError as exc:
        raise _fail(str(exc)) from None
    number = read = 0
    windowed = window != TimeWindow()
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
                read += 1
                if windowed and flow.get("verdict") == "AUDIT":
                    try:
                        stamp = parse_rfc3339_ns(flow.get("time") or response.get("time") or "")
                    except TimeParseError:
                        stamp = 0  # no readable time counts as the epoch, as in `hubble observe`
                    if not window.holds(stamp):
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
    return read


def _nothing_matched(read: int, namespace: str, since: str, until: str, source: str) -> str:
    """The one line saying that no flow matched the query, and what was asked."""
    asked = [f"namespace {namespace}"] if namespace else []
    if since:
        asked.append(f"since {since}")
    if until:
        asked.append(f"until {until}")
    query = f" ({', '.join(asked)})" if asked else ""
    return (
        f"no flow with verdict AUDIT matched{query} in {read} flow{'s' if read != 1 else ''} read from "
        f"{source}: nothing to report, and no evidence about what enforcement would drop"
    )


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
    since: str = typer.Option(
        "", "--since", help="only flows since this time (RFC 3339) or duration ago (e.g. 5s, 2m, 3h)"
    ),
    until: str = typer.Option(
        "", "--until", help="only flows until this time (RFC 3339) or duration ago (e.g. 5s, 2m, 3h)"
    ),
    output: str = typer.Option("table", "--output", "-o", help="table, csv or json"),
    by: str = typer.Option(
        "workload",
        "--by",
        help="group sources and destinations by workload (Deployment, StatefulSet...) or by pod",
    ),
    timeout: str = typer.Option(
        "", "--timeout", help="how long to wait for the server connection (default 5s)"
    ),
    config: str = typer.Option("", "--config", help="config file (default: $HUBBLE_CONFIG or the user's)"),
    tls: bool = typer.Option(False, "--tls", help="use TLS to reach the server"),
    tls_allow_insecure: bool = typer.Option(
        False, "--tls-allow-insecure", help="accept any certificate the server presents"
    ),
    tls_ca_cert_files: str = typer.Option(
        "", "--tls-ca-cert-files", help="comma-separated CA certificate files to verify the server with"
    ),
    tls_client_cert_file: str = typer.Option(
        "", "--tls-client-cert-file", help="client certificate file (mutual TLS)"
    ),
    tls_client_key_file: str = typer.Option("", "--tls-client-key-file", help="client key file (mutual TLS)"),
    tls_server_name: str = typer.Option(
        "", "--tls-server-name", help="name to verify the server certificate against"
    ),
) -> None:
    """What would break if enforcement were turned on: AUDIT verdicts by source, destination and port.

    Exits 1, saying so, when no flow matched.
    """
    from hubblepy.policy.audit import GROUPINGS, AuditReport

    if output not in ("table", "csv", "json"):
        raise _fail(f"unknown output format {output!r} (table, csv, json)")
    if by not in GROUPINGS:
        raise _fail(f"unknown grouping --by {by!r} ({', '.join(GROUPINGS)})")
    connection_flags = {
        "server": server,
        "timeout": timeout,
        "tls": tls,
        "tls_allow_insecure": tls_allow_insecure,
        "tls_ca_cert_files": tls_ca_cert_files,
        "tls_client_cert_file": tls_client_cert_file,
        "tls_client_key_file": tls_client_key_file,
        "tls_server_name": tls_server_name,
    }
    if input_file:
        given = [
            "--" + key.replace("_", "-")
            for key, value in connection_flags.items()
            if value not in ("", False)
        ]
        if given:
            raise _fail(f"{given[0]} and --input-file cannot be used together")
    if last < 0:
        raise _fail("--last must be 0 or more")
    window = _time_window(since, until)
    report = AuditReport(by=by)
    if input_file:
        read = _from_file(input_file, namespace, window, report)
        source = "stdin" if input_file == "-" else input_file
    else:
        conn = _connection({**connection_flags, "config": config, "request_timeout": ""})
        read = _from_server(conn, namespace, last, window, report)
        source = getattr(conn, "server", "") or "the server"
    if not report.flows:
        raise _fail(_nothing_matched(read, namespace, since, until, source))
    if output == "json":
        import json

        typer.echo(json.dumps(report.to_json(), indent=2))
    elif output == "csv":
        import csv

        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(report.csv_rows())
        typer.echo(buffer.getvalue(), nl=False)
    else:
        from hubblepy.cli.tables import renderer_for

        typer.echo(report.table(renderer_for(sys.stdout)), nl=False)


@policy_app.command("validate")
def validate_command(
    files: Annotated[
        list[str],
        typer.Argument(metavar="FILE...", help="policy YAML files (several documents each allowed)"),
    ],
    output: str = typer.Option("text", "--output", "-o", help="text or json"),
) -> None:
    """Check policy files offline, as `hubble lab policy apply` would load them (no lab, no root).

    Exit 0 when every document of every file would load; 1 with one line per problem otherwise.
    """
    from hubblepy.policy import PolicyError
    from hubblepy.policy.parse import check_policies, read_policy_file

    if output not in ("text", "json"):
        raise _fail(f"unknown output format {output!r} (text, json)")
    results: list[dict[str, Any]] = []
    for name in files:
        try:
            policies, problems = check_policies(read_policy_file(name), name)
        except PolicyError as exc:
            policies, problems = [], [str(exc)]
        results.append(
            {
                "file": name,
                "valid": not problems,
                "policies": [str(p.ref) for p in policies],
                "errors": problems,
                "warnings": [w for p in policies for w in p.warnings],
            }
        )
    valid = all(r["valid"] for r in results)
    if output == "json":
        import json

        typer.echo(json.dumps({"valid": valid, "files": results}, indent=2))
    else:
        for r in results:
            for line in r["errors"]:
                typer.echo(line, err=True)
            for line in r["warnings"]:
                typer.echo(f"warning: {line}", err=True)
            if r["valid"]:
                typer.echo(f"{r['file']}: valid ({', '.join(r['policies'])})")
    if not valid:
        raise typer.Exit(1)


@policy_app.command(
    "suggest",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def suggest_command(
    ctx: typer.Context,
    l7: bool = typer.Option(
        False, "--l7", help="add L7 http rules (method, path) where HTTP requests were seen"
    ),
    explain: bool = typer.Option(
        False, "--explain", help="after each policy, list the flows behind each rule"
    ),
) -> None:
    """The smallest CiliumNetworkPolicy set allowing exactly the observed connections (YAML on stdout).

    Takes `hubble observe`'s source and filter flags, e.g. `--input-file F --verdict AUDIT` or
    `--server ADDR --namespace payments --verdict DROPPED --since 48h` (see docs/policy/suggest.md).
    """
    from hubblepy.policy.suggest import Suggester

    suggester = Suggester(l7=l7)
    _read_observed_flows(list(ctx.args), suggester.add)
    result = suggester.finish()
    typer.echo(result.to_yaml(explain=explain), nl=False)
    if result.unsuggested:
        typer.echo(
            f"hubble policy suggest: {result.unsuggested_flows} flow(s) would need a rule broader than their "
            "evidence; they are listed at the end of the output, not suggested",
            err=True,
        )
    if not result.policies:
        typer.echo("hubble policy suggest: no connection to allow in the selected flows", err=True)


class _FlowLines(io.RawIOBase):
    """A binary stream for `hubble observe -o json` output: each complete line's flow goes to ``sink``."""

    def __init__(self, sink: Any) -> None:
        super().__init__()
        self._sink = sink
        self._pending = b""

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        import orjson

        chunk = self._pending + bytes(data)
        lines = chunk.split(b"\n")
        self._pending = lines.pop()
        for line in lines:
            record = orjson.loads(line)
            if isinstance(record.get("flow"), dict):
                self._sink(record["flow"])
        return len(data)


def _read_observed_flows(argv: list[str], sink: Any) -> None:
    """Hand ``sink`` each flow `hubble observe ARGV -o json` prints (a server is read with --all when no
    count is given), as it is printed."""
    from hubblepy.cli import observe
    from hubblepy.cli.file_input import InputError
    from hubblepy.cli.observe_args import UsageError
    from hubblepy.filters import FilterError

    for word in argv:
        name = word.split("=", 1)[0]
        if name in ("-o", "--output", "--jq", "-f", "--follow", "--field-mask") or (
            word.startswith("-o") and not word.startswith("--")
        ):
            raise _fail(f"{name} cannot be used with suggest (it reads whole flows, once)")
    live = not any(w == "--input-file" or w.startswith("--input-file=") for w in argv)
    if live and not any(w.split("=")[0] in ("--first", "--last", "--all") for w in argv):
        argv = [*argv, "--all"]
    out = _FlowLines(sink)
    err = io.StringIO()
    try:
        status = observe.run([*argv, "-o", "json"], os.environ, sys.stdin.buffer, out, err)  # type: ignore[arg-type]
    except (UsageError, FilterError, observe.ObserveError, InputError) as exc:
        raise _fail(str(exc)) from None
    if status != 0:
        text = err.getvalue().strip()
        raise _fail(text.splitlines()[-1] if text else "reading flows failed")


def main() -> None:
    """``python -m hubblepy.cli.policy ...``: the policy commands on their own."""
    policy_app(prog_name="hubble policy")


if __name__ == "__main__":
    main()


__all__ = ["policy_app", "register"]
