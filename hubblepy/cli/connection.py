"""How every live command reaches a Hubble server or relay: server flags, dialing, errors.

Connection rules follow upstream: ``--server`` (default ``localhost:4245``); a ``tls://`` prefix or
``--tls`` means TLS; ``--timeout`` bounds the dial and ``--request-timeout`` the unary calls;
``--tls-allow-insecure`` trusts whatever certificate the server presents (see
:mod:`hubblepy.cli.live_tls`); ``-P``/``--port-forward`` runs ``kubectl port-forward`` to the
relay service (:mod:`hubblepy.cli.portforward`). Values come from :mod:`hubblepy.cli.settings`;
the :class:`Connection` they fill is defined (without gRPC) in :mod:`hubblepy.cli.connection_flags`.

When the channel cannot connect, :func:`dial` does not wait for the timeout: as soon as gRPC
reports the failure it finds the cause itself (name lookup, TCP connect, TLS handshake) and
raises one line naming it and the flag that fixes it, e.g.
``failed to connect to 'localhost:1': dial tcp 127.0.0.1:1: connect: connection refused (...)``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

# gRPC core writes handshake failures and the like straight to stderr; the CLI reports errors in one
# line of its own, so keep the core quiet unless the user asks for its logs.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import grpc  # noqa: E402

from hubblepy.cli.connection_flags import (  # noqa: E402, F401
    DEFAULT_SERVER,
    GLOBAL_FLAGS,
    SERVER_FLAGS,
    TLS_PREFIX,
    Connection,
    validate_flags,
)
from hubblepy.cli.pflag import FlagSet, HelpRequested, UsageError  # noqa: E402
from hubblepy.cli.settings import Settings  # noqa: E402
from hubblepy.rpcerror import rpc_error_text  # noqa: E402

HEALTH_SERVICE_NAME = "hubble.server.Observer"


class LiveError(Exception):
    """An error that ends a live command with one line on stderr and exit status 1."""


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise LiveError(f"open {path}: {(exc.strerror or 'error').lower()}") from None


# Port-forward helpers started by dial(), stopped by hangup().
_FORWARDERS: dict[int, Any] = {}


def dial(conn: Connection) -> grpc.Channel:
    """Open a channel; return once it is connected, or raise :class:`LiveError` naming the cause.

    A cause found at once (refused, unknown name, TLS mismatch...) is reported at once; only a
    server that does not answer makes the dial wait for ``--timeout``.
    """
    forwarder = None
    if conn.port_forward:
        from hubblepy.cli.portforward import PortForwardError, start_port_forward

        try:
            forwarder = start_port_forward(conn)
        except PortForwardError as exc:
            raise LiveError(str(exc)) from None
        conn = Connection(**{**conn.__dict__, "server": forwarder.address, "port_forward": False})
    try:
        channel = _dial(conn)
    except BaseException:
        if forwarder is not None:
            forwarder.stop()
        raise
    if forwarder is not None:
        _FORWARDERS[id(channel)] = forwarder
    return channel


INTERRUPT_GRACE_S = 3.0


def catch_interrupts() -> None:
    """Turn Ctrl-C (SIGINT) into KeyboardInterrupt even if this process started with it ignored.

    Python keeps an inherited "ignore" for SIGINT (a command started in the background by a
    non-interactive shell has it), so ``observe -f`` could not be stopped. Upstream's CLI asks Go's
    ``signal.Notify`` for it, which installs a handler whatever was inherited; this does the same.
    """
    import signal

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)


def exit_after_interrupt(status: int = 0) -> None:
    """After Ctrl-C: let the clean-up run, but end the process within :data:`INTERRUPT_GRACE_S`.

    Cancelling a stream and closing its channel waits on gRPC's own threads; on a loaded machine that
    can take long. A user who pressed Ctrl-C expects the command to end at once, as upstream's does,
    so a daemon timer ends the process (after flushing what was printed) if the clean-up is not done.
    """

    def _force() -> None:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(status)

    timer = threading.Timer(INTERRUPT_GRACE_S, _force)
    timer.daemon = True
    timer.start()


def hangup(channel: grpc.Channel) -> None:
    """Close a channel from :func:`dial` (and stop its port-forward, if any)."""
    _close(channel)
    forwarder = _FORWARDERS.pop(id(channel), None)
    if forwarder is not None:
        forwarder.stop()


def _dial(conn: Connection) -> grpc.Channel:
    use_tls = conn.uses_tls
    target = conn.server.removeprefix(TLS_PREFIX)
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
        credentials = grpc.ssl_channel_credentials(roots, private_key=key, certificate_chain=cert)
        if conn.basic_auth_username:
            credentials = grpc.composite_channel_credentials(
                credentials, grpc.metadata_call_credentials(_BasicAuth(conn))
            )
        channel = grpc.secure_channel(target, credentials, options=options)
    else:
        if conn.basic_auth_username:
            # Upstream's basic-auth credentials require transport security (grpc-go's own words).
            raise LiveError(
                f"failed to connect to '{conn.server}': grpc: the credentials require transport level "
                "security (use grpc.WithTransportCredentials() to set) (basic auth needs --tls)"
            )
        channel = grpc.insecure_channel(target, options=options)
    failed = threading.Event()

    def watch(state: grpc.ChannelConnectivity) -> None:
        if state in (grpc.ChannelConnectivity.TRANSIENT_FAILURE, grpc.ChannelConnectivity.SHUTDOWN):
            failed.set()

    ready = grpc.channel_ready_future(channel)
    channel.subscribe(watch, try_to_connect=True)
    ready.add_done_callback(lambda _: failed.set())
    failed.wait(conn.timeout_s)
    channel.unsubscribe(watch)
    if ready.done() and not ready.cancelled():
        return channel
    ready.cancel()
    from hubblepy.cli.diagnose import diagnose

    cause = diagnose(conn, target, use_tls, max(0.2, min(conn.timeout_s, 2.0)))
    if cause is None:
        cause = "context deadline exceeded" if not failed.is_set() else "the server closed the connection"
    _close(channel)
    raise LiveError(f"failed to connect to '{conn.server}': {cause}")


def _close(channel: grpc.Channel) -> None:
    """Close a channel once gRPC's connectivity poller (started by subscribe) has stopped.

    Closing while the poller runs makes it fail in its own thread with a traceback on stderr.
    """
    state = getattr(channel, "_connectivity_state", None)
    deadline = time.monotonic() + 1.0
    while state is not None and getattr(state, "polling", False) and time.monotonic() < deadline:
        time.sleep(0.01)
    channel.close()


class _BasicAuth(grpc.AuthMetadataPlugin):
    """``authorization: Basic ...`` on every call, as upstream's basic-auth credentials."""

    def __init__(self, conn: Connection) -> None:
        import base64

        token = base64.b64encode(f"{conn.basic_auth_username}:{conn.basic_auth_password}".encode()).decode()
        self.metadata = (("authorization", f"Basic {token}"),)

    def __call__(self, context: Any, callback: Any) -> None:
        callback(self.metadata, None)


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
    return rpc_error_text(exc)


def connection_from_flags(flags: Any, env: Any) -> Connection:
    """The connection of parsed pflag values (:class:`hubblepy.cli.pflag.FlagValues`) and ``env``."""
    settings = Settings(env, {k: flags.values[k] for k in flags.changed if k in flags.values})
    if settings.boolean("debug") and settings.file_used:
        from hubblepy.cli.slog import slog_line

        sys.stderr.write(slog_line("DEBUG", "Using config file", config_file=settings.file_used))
    try:
        return Connection.from_settings(settings)
    except UsageError as exc:
        raise LiveError(str(exc)) from None


def connection_from_mapping(flags: Mapping[str, Any], env: Mapping[str, str]) -> Connection:
    """The connection of typed flag values (``tls_ca_cert_files`` or ``tls-ca-cert-files`` keys).

    ``""``, ``False`` and ``None`` count as "not given", so the environment and config file apply.
    """
    given: dict[str, Any] = {}
    for key, value in flags.items():
        if value in ("", False, None):
            continue
        name = key.replace("_", "-")
        if name == "tls-ca-cert-files" and isinstance(value, str):
            value = [p for p in value.split(",") if p]
        elif name in ("timeout", "request-timeout") and isinstance(value, str):
            # a flag's duration is checked as pflag does (only the environment and file are lenient)
            from hubblepy.cli.pflag import FlagSpec, FlagValues

            try:
                FlagValues().set(FlagSpec(name, "duration"), value)
            except UsageError as exc:
                raise LiveError(str(exc)) from None
        given[name] = value
    try:
        return Connection.from_settings(Settings(env, given))
    except UsageError as exc:
        raise LiveError(str(exc)) from None


def run_live(
    help_text: Callable[[], str],
    command: Callable[[list[str], Mapping[str, str], TextIO], int],
    argv: list[str],
    env: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run a live command's ``command(argv, env, out)``; errors become one line on ``err`` and exit 1."""
    env = os.environ if env is None else env
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        return command(argv, env, out)
    except HelpRequested:
        out.write(help_text())
        return 0
    except (LiveError, UsageError) as exc:
        out.flush()
        err.write(f"{exc}\n")
        return 1
    except grpc.RpcError as exc:
        out.flush()
        err.write(rpc_error_line(exc) + "\n")
        return 1
    except (KeyboardInterrupt, BrokenPipeError):
        return 0


def parse_live_flags(
    flagset: FlagSet, argv: list[str], env: Mapping[str, str]
) -> tuple[Any, list[str], Connection]:
    """Parse ``argv`` with ``flagset``; returns the values, the positional words and the connection.

    Raises :class:`HelpRequested` for ``-h``/``--help``.
    """
    values, positional = flagset.parse(argv)
    if values.get("help"):
        raise HelpRequested()
    return values, positional, connection_from_flags(values, env)
