"""``hubble ui``: serve the live service map on loopback (default ``127.0.0.1:12000``).

Flows come from a Hubble server or relay, with the connection flags, ``HUBBLE_*`` variables and
config file of the other live commands (``--server``, ``--tls``, ``--tls-allow-insecure``,
``--tls-ca-cert-files``, client certificates, ``--timeout``), or from a saved capture
(``--input-file F``, ``-`` for stdin). Bad flags or an unreadable file give one line and exit 1;
Ctrl-C or SIGTERM stop the server with exit 0.
"""

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Mapping
from types import SimpleNamespace
from typing import TextIO

DEFAULT_LISTEN_ADDRESS = "127.0.0.1:12000"


UI = "UI"


def _flags():  # noqa: ANN202 - a pflag FlagSet
    from hubblepy.cli.connection_flags import GLOBAL_FLAGS, SERVER_FLAGS
    from hubblepy.cli.pflag import FlagSet, FlagSpec

    return FlagSet(
        (
            FlagSpec("listen-address", "string", help="HOST:PORT to serve the page on", group=UI,
                     default=f'"{DEFAULT_LISTEN_ADDRESS}"'),
            FlagSpec("input-file", "string", help="show the flows of a file (`hubble observe -o json`)", group=UI),
            FlagSpec("last", "uint64", help="flows of the past to start with (live)", group=UI, default="10000"),
            FlagSpec("batch-interval", "float64", help="seconds between map updates sent to pages", group=UI,
                     default="0.5"),
            FlagSpec("flows-per-edge", "uint64", help="recent flows kept per edge for the table", group=UI,
                     default="100"),
            FlagSpec("recent", "string", help="only drops/audits newer than this colour an edge (Go duration, "
                     "e.g. 5m; 0: all)", group=UI, default='"0"'),
            *SERVER_FLAGS,
            *GLOBAL_FLAGS,
        )
    )  # fmt: skip


def ui_help() -> str:
    from hubblepy.cli.help import render_help

    return render_help(
        "Serve the live service map (allowed and dropped flows per edge) in the browser.",
        ["hubble ui [flags]"],
        _flags().specs,
        (UI, "Server Flags", "Global Flags"),
    )


def main(
    argv: list[str],
    env: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run ``hubble ui ARGS``; returns the exit status."""
    from hubblepy.cli.connection import LiveError
    from hubblepy.ui.feed import FeedError, LiveFeed, read_flows_file
    from hubblepy.ui.model import FlowMap
    from hubblepy.ui.server import UiServer, serve, split_listen_address

    env = os.environ if env is None else env
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    from hubblepy.cli.connection import connection_from_flags
    from hubblepy.cli.pflag import HelpRequested, UsageError

    try:
        flags, _ = _flags().parse(argv)
        if flags.get("help"):
            raise HelpRequested()
        args = SimpleNamespace(
            listen_address=flags.get("listen-address", DEFAULT_LISTEN_ADDRESS),
            input_file=flags.get("input-file", ""),
            last=flags.get("last", 10000),
            batch_interval=flags.get("batch-interval", 0.5),
            flows_per_edge=flags.get("flows-per-edge", 100),
            recent=flags.get("recent", "0"),
        )
        split_listen_address(args.listen_address)
        if args.batch_interval <= 0 or args.flows_per_edge < 1 or args.last < 0:
            raise LiveError("--batch-interval and --flows-per-edge must be positive, --last at least 0")
        from hubblepy.cli.timeparse import DurationError, parse_go_duration

        try:
            recent_ns = parse_go_duration(args.recent)
        except DurationError as exc:
            raise LiveError(f"invalid --recent: {exc}") from None
        if recent_ns < 0:
            raise LiveError("invalid --recent: it must not be negative")
        flowmap = FlowMap(args.flows_per_edge, recent_ns)
        feed = None
        if args.input_file:
            name = "stdin" if args.input_file == "-" else args.input_file
            server = UiServer(flowmap, args.batch_interval)
            try:
                with open(
                    0 if args.input_file == "-" else args.input_file, "rb", closefd=args.input_file != "-"
                ) as fh:
                    for batch in read_flows_file(fh, name):
                        server.on_batch(batch)
            except OSError as exc:
                raise LiveError(f"open {args.input_file}: {(exc.strerror or 'error').lower()}") from None
            server.on_status("file", f"{name}: {flowmap.total} flows")
            server.reset_rate()
        else:
            conn = connection_from_flags(flags, env)
            server = UiServer(flowmap, args.batch_interval, conn.server)
            feed = LiveFeed(conn, args.last, server.on_batch, server.on_status)
    except HelpRequested:
        out.write(ui_help())
        return 0
    except (LiveError, FeedError, UsageError, ValueError) as exc:
        err.write(f"hubble ui: {exc}\n")
        return 1

    def ready(url: str) -> None:
        out.write(f"hubble ui: serving the service map on {url}\n")
        out.flush()

    async def run() -> None:
        task = asyncio.create_task(serve(server, args.listen_address, feed, ready))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    try:
        asyncio.run(run())
    except OSError as exc:
        err.write(f"hubble ui: cannot listen on {args.listen_address}: {exc.strerror or exc}\n")
        return 1
    except KeyboardInterrupt:
        pass
    return 0
