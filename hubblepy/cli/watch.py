"""`hubble watch peers`: print the peer change notifications of a server until interrupted."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TextIO

from hubblepy.cli.connection_flags import GLOBAL_FLAGS, SERVER_FLAGS
from hubblepy.cli.help import render_help
from hubblepy.cli.pflag import FlagSet

WATCH_FLAGS = (*SERVER_FLAGS, *GLOBAL_FLAGS)


def watch_help(what: str = "") -> str:
    if what == "peers":
        return render_help(
            "Print peer changes (nodes added, deleted, updated) as the server reports them.",
            ["hubble watch peers [flags]"],
            WATCH_FLAGS,
            ("Server Flags", "Global Flags"),
        )
    return render_help(
        "Watch what a Hubble server or relay reports as it changes.",
        ["hubble watch [command]"],
        GLOBAL_FLAGS,
        ("Global Flags",),
        commands=(("peers", "Watch peer changes"),),
        footer='Use "hubble watch [command] --help" for more information about a command.',
    )


def main(
    argv: list[str],
    env: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run `hubble watch` with ``argv`` (the words after ``watch``); returns the exit status."""
    from hubblepy.cli.connection import run_live

    what = "peers" if argv[:1] in (["peers"], ["peer"]) else ""
    return run_live(lambda: watch_help(what), _watch, argv, env, out, err)


watch_main = main


def _watch(argv: list[str], env: Mapping[str, str], out: TextIO) -> int:
    import grpc

    from hubblepy.api.peer import peer_pb2, peer_pb2_grpc
    from hubblepy.cli.connection import (
        LiveError,
        catch_interrupts,
        dial,
        exit_after_interrupt,
        hangup,
        parse_live_flags,
    )
    from hubblepy.cli.pflag import HelpRequested

    if not argv or argv[0] in ("-h", "--help", "help"):
        raise HelpRequested()
    if argv[0] not in ("peers", "peer"):
        raise LiveError(f'unknown command "{argv[0]}" for "hubble watch"')
    _, _, conn = parse_live_flags(FlagSet(WATCH_FLAGS), argv[1:], env)
    channel = dial(conn)
    catch_interrupts()
    stream = peer_pb2_grpc.PeerStub(channel).Notify(peer_pb2.NotifyRequest())
    try:
        for note in stream:
            out.write(format_peer_change(note))
            out.flush()
    except KeyboardInterrupt:
        exit_after_interrupt()
        stream.cancel()
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.CANCELLED:
            raise
    finally:
        hangup(channel)
    return 0


def format_peer_change(note: Any) -> str:
    from hubblepy.api.peer import peer_pb2

    tls = f" (TLS.ServerName: {note.tls.server_name})" if note.HasField("tls") else ""
    kind = peer_pb2.ChangeNotificationType.Name(note.type) if note.type in (0, 1, 2, 3) else str(note.type)
    return f"{kind:<12} {note.address} {note.name}{tls}\n"
