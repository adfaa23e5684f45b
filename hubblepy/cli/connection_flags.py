"""The server and global flags of every live command, the :class:`Connection` they describe, and
upstream's checks of them (no gRPC import: ``observe --input-file`` parses these without loading gRPC).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hubblepy.cli.pflag import FlagSpec, UsageError, bool_flag

if TYPE_CHECKING:
    from hubblepy.cli.settings import Settings

TLS_PREFIX = "tls://"
DEFAULT_SERVER = "localhost:4245"

SERVER = "Server Flags"
GLOBAL = "Global Flags"

#: Upstream's server flags, shared by observe, status, list, watch (and ui).
SERVER_FLAGS = (
    FlagSpec("basic-auth-password", "string", help="password for HTTP basic auth", group=SERVER),
    FlagSpec("basic-auth-username", "string", help="user name for HTTP basic auth", group=SERVER),
    FlagSpec(
        "kube-context", "string", help="kubeconfig context to use (only with --port-forward)", group=SERVER
    ),
    FlagSpec(
        "kube-namespace",
        "string",
        help="namespace of the hubble-relay service (only with --port-forward)",
        group=SERVER,
        default='"kube-system"',
    ),
    FlagSpec("kubeconfig", "string", help="kubeconfig file to use (only with --port-forward)", group=SERVER),
    bool_flag(
        "port-forward",
        "P",
        help="forward the relay's port to this machine with `kubectl port-forward` and connect through it",
        group=SERVER,
    ),
    FlagSpec(
        "port-forward-port",
        "uint16",
        help="local port of --port-forward; 0 picks a free one",
        group=SERVER,
        default="4245",
    ),
    FlagSpec(
        "request-timeout",
        "duration",
        help="deadline of each unary call (ServerStatus, GetNodes, GetNamespaces)",
        group=SERVER,
        default="12s",
    ),
    FlagSpec(
        "server",
        "string",
        help="address of the Hubble server or relay (tls://HOST:PORT for TLS); not used with --input-file "
        "or --port-forward",
        group=SERVER,
        default='"localhost:4245"',
    ),
    FlagSpec("timeout", "duration", help="how long to wait for the connection", group=SERVER, default="5s"),
    bool_flag("tls", help="connect with TLS (implied by a tls:// address)", group=SERVER),
    bool_flag(
        "tls-allow-insecure",
        help="accept any server certificate without checking its chain or name (encrypted, not "
        "authenticated)",
        group=SERVER,
    ),
    FlagSpec(
        "tls-ca-cert-files", "string_slice", help="PEM files of the CAs to trust for the server", group=SERVER
    ),
    FlagSpec(
        "tls-client-cert-file",
        "string",
        help="PEM client certificate for mutual TLS (implies TLS)",
        group=SERVER,
    ),
    FlagSpec("tls-client-key-file", "string", help="PEM key of the client certificate", group=SERVER),
    FlagSpec(
        "tls-server-name",
        "string",
        help="name to expect on the server's certificate (e.g. instance.hubble-relay.cilium.io)",
        group=SERVER,
    ),
)

#: Flags every command has.
GLOBAL_FLAGS = (
    FlagSpec(
        "config", "string", help="config file (default: <user config dir>/hubble/config.yaml)", group=GLOBAL
    ),
    bool_flag("debug", "D", help="print debug messages", group=GLOBAL),
    bool_flag("help", "h", help="help for this command", group=""),
)


def validate_flags(user: str, password: str, cert: str, key: str, uses_tls: bool) -> None:
    """Basic auth needs both names; a client certificate needs its key and TLS."""
    if bool(user) != bool(password):
        raise UsageError("invalid flag(s): must specify both basic-auth-username and basic-auth-password")
    if key or cert:
        if not (key and cert):
            raise UsageError(
                "invalid flag(s): certificate and private key are both required, but only one was provided"
            )
        if not uses_tls:
            raise UsageError("invalid flag(s): transport layer security required")


@dataclass
class Connection:
    """How to reach the server (dialed by :func:`hubblepy.cli.connection.dial`)."""

    server: str = DEFAULT_SERVER
    timeout_s: float = 5.0
    request_timeout_s: float = 12.0
    tls: bool = False
    tls_allow_insecure: bool = False
    tls_ca_cert_files: list[str] = field(default_factory=list)
    tls_client_cert_file: str = ""
    tls_client_key_file: str = ""
    tls_server_name: str = ""
    basic_auth_username: str = ""
    basic_auth_password: str = ""
    port_forward: bool = False
    port_forward_port: int = 4245
    kube_context: str = ""
    kube_namespace: str = "kube-system"
    kubeconfig: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> Connection:
        """The connection the settings describe, checked like upstream's PersistentPreRunE.

        The settings are read in upstream's order, so the first bad value is the one reported.
        """
        conn = cls(
            server=settings.string("server"),
            timeout_s=settings.duration_s("timeout"),
            request_timeout_s=settings.duration_s("request-timeout"),
            tls=settings.boolean("tls"),
            tls_allow_insecure=settings.boolean("tls-allow-insecure"),
            tls_ca_cert_files=settings.string_list("tls-ca-cert-files"),
            tls_client_cert_file=settings.string("tls-client-cert-file"),
            tls_client_key_file=settings.string("tls-client-key-file"),
            tls_server_name=settings.string("tls-server-name"),
            basic_auth_username=settings.string("basic-auth-username"),
            basic_auth_password=settings.string("basic-auth-password"),
            port_forward=settings.boolean("port-forward"),
            port_forward_port=settings.uint("port-forward-port") & 0xFFFF,
            kube_context=settings.string("kube-context"),
            kube_namespace=settings.string("kube-namespace"),
            kubeconfig=settings.string("kubeconfig"),
        )
        conn.validate()
        return conn

    @property
    def uses_tls(self) -> bool:
        return self.tls or self.server.startswith(TLS_PREFIX)

    def validate(self) -> None:
        """Upstream's flag checks, in its order; raises :class:`UsageError` with its text."""
        validate_flags(self.basic_auth_username, self.basic_auth_password, self.tls_client_cert_file,
                       self.tls_client_key_file, self.uses_tls)  # fmt: skip
