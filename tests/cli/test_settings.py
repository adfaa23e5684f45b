"""One settings layer: every setting read the same way by every command (upstream's viper and cast).

The table gives, for each setting, values from the flag, the ``HUBBLE_*`` variable and the config
file, and what the connection must hold; each row is checked against every live command.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml

from hubblepy.cli.connection import Connection, connection_from_flags, parse_live_flags
from hubblepy.cli.observe_args import parse_observe_args
from hubblepy.cli.pflag import FlagSet, UsageError
from hubblepy.cli.settings import KEYS, Settings

NO_HOME = {"HOME": "/nonexistent-hubblepy-test-home"}


def observe(argv: list[str], env: dict[str, str]) -> Connection:
    return parse_observe_args(["--input-file", "-", *argv], env).connection


def live(flags: Any) -> Any:
    def resolve(argv: list[str], env: dict[str, str]) -> Connection:
        return parse_live_flags(FlagSet(flags), argv, env)[2]

    return resolve


def ui(argv: list[str], env: dict[str, str]) -> Connection:
    from hubblepy.ui.cli import _flags

    return connection_from_flags(_flags().parse(argv)[0], env)


def events(argv: list[str], env: dict[str, str]) -> Connection:
    from hubblepy.cli.observe_events import event_flags

    return connection_from_flags(FlagSet(event_flags()).parse(argv)[0], env)


def _commands() -> dict[str, Any]:
    from hubblepy.cli.list import LIST_FLAGS
    from hubblepy.cli.status import STATUS_FLAGS
    from hubblepy.cli.watch import WATCH_FLAGS

    return {
        "observe": observe,
        "observe agent-events": events,
        "status": live(STATUS_FLAGS),
        "list": live(LIST_FLAGS),
        "watch peers": live(WATCH_FLAGS),
        "ui": ui,
    }


COMMANDS = _commands()


@dataclass
class Case:
    name: str
    expect: dict[str, Any]
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    file: dict[str, Any] | None = None


NS = 1e-9
CERTS = {"tls": True, "tls_client_cert_file": "c.pem", "tls_client_key_file": "k.pem"}

CASES = [
    # server
    Case("server default", {"server": "localhost:4245"}),
    Case("server flag", {"server": "a:1"}, argv=["--server", "a:1"]),
    Case("server env", {"server": "b:2"}, env={"HUBBLE_SERVER": "b:2"}),
    Case("server file", {"server": "c:3"}, file={"server": "c:3"}),
    Case("server flag over env", {"server": "a:1"}, argv=["--server=a:1"], env={"HUBBLE_SERVER": "b:2"}),
    Case("server env over file", {"server": "b:2"}, env={"HUBBLE_SERVER": "b:2"}, file={"server": "c:3"}),
    Case("server empty env is unset", {"server": "c:3"}, env={"HUBBLE_SERVER": ""}, file={"server": "c:3"}),
    # durations: a number without unit is nanoseconds (spf13/cast)
    Case("timeout default", {"timeout_s": 5.0, "request_timeout_s": 12.0}),
    Case("timeout flag", {"timeout_s": 7.0}, argv=["--timeout", "7s"]),
    Case("timeout env without unit", {"timeout_s": 7 * NS}, env={"HUBBLE_TIMEOUT": "7"}),
    Case("timeout env with unit", {"timeout_s": 0.25}, env={"HUBBLE_TIMEOUT": "250ms"}),
    Case("timeout env unreadable", {"timeout_s": 0.0}, env={"HUBBLE_TIMEOUT": "soon"}),
    Case("timeout file number", {"timeout_s": 3 * NS}, file={"timeout": 3}),
    Case("timeout file text", {"timeout_s": 2.0}, file={"timeout": "2s"}),
    Case("request-timeout flag", {"request_timeout_s": 1.5}, argv=["--request-timeout", "1.5s"]),
    Case("request-timeout env", {"request_timeout_s": 9 * NS}, env={"HUBBLE_REQUEST_TIMEOUT": "9"}),
    Case("request-timeout file", {"request_timeout_s": 60.0}, file={"request-timeout": "1m"}),
    # booleans: strconv.ParseBool, anything else is false
    Case("tls default", {"tls": False, "tls_allow_insecure": False}),
    Case("tls flag", {"tls": True}, argv=["--tls"]),
    Case("tls flag false", {"tls": False}, argv=["--tls=false"], env={"HUBBLE_TLS": "true"}),
    Case("tls env", {"tls": True}, env={"HUBBLE_TLS": "1"}),
    Case("tls env not a bool", {"tls": False}, env={"HUBBLE_TLS": "yes"}),
    Case("tls file", {"tls": True}, file={"tls": True}),
    Case("tls-allow-insecure flag", {"tls_allow_insecure": True}, argv=["--tls-allow-insecure"]),
    Case("tls-allow-insecure env", {"tls_allow_insecure": True}, env={"HUBBLE_TLS_ALLOW_INSECURE": "TRUE"}),
    Case("tls-allow-insecure file", {"tls_allow_insecure": True}, file={"tls-allow-insecure": "t"}),
    # string slices: a flag is comma-separated, a variable split on white space, a file list item by item
    Case("ca files default", {"tls_ca_cert_files": []}),
    Case("ca files flag", {"tls_ca_cert_files": ["a", "b"]}, argv=["--tls-ca-cert-files", "a,b"]),
    Case(
        "ca files flag repeated",
        {"tls_ca_cert_files": ["a", "b", "c"]},
        argv=["--tls-ca-cert-files", "a,b", "--tls-ca-cert-files=c"],
    ),
    Case("ca files env comma", {"tls_ca_cert_files": ["a,b"]}, env={"HUBBLE_TLS_CA_CERT_FILES": "a,b"}),
    Case("ca files env spaces", {"tls_ca_cert_files": ["a", "b"]}, env={"HUBBLE_TLS_CA_CERT_FILES": "a b"}),
    Case("ca files file list", {"tls_ca_cert_files": ["a", "b"]}, file={"tls-ca-cert-files": ["a", "b"]}),
    Case("ca files file text", {"tls_ca_cert_files": ["a,b"]}, file={"tls-ca-cert-files": "a,b"}),
    # strings
    Case("tls-server-name flag", {"tls_server_name": "x.io"}, argv=["--tls-server-name", "x.io"]),
    Case("tls-server-name env", {"tls_server_name": "y.io"}, env={"HUBBLE_TLS_SERVER_NAME": "y.io"}),
    Case("tls-server-name file", {"tls_server_name": "z.io"}, file={"tls-server-name": "z.io"}),
    Case(
        "client cert flags",
        CERTS,
        argv=["--tls", "--tls-client-cert-file", "c.pem", "--tls-client-key-file=k.pem"],
    ),
    Case(
        "client cert env",
        CERTS,
        env={
            "HUBBLE_TLS": "true",
            "HUBBLE_TLS_CLIENT_CERT_FILE": "c.pem",
            "HUBBLE_TLS_CLIENT_KEY_FILE": "k.pem",
        },
    ),
    Case(
        "client cert file",
        CERTS,
        file={"tls": True, "tls-client-cert-file": "c.pem", "tls-client-key-file": "k.pem"},
    ),
    Case(
        "basic auth flags",
        {"basic_auth_username": "u", "basic_auth_password": "p"},
        argv=["--basic-auth-username", "u", "--basic-auth-password", "p"],
    ),
    Case(
        "basic auth env",
        {"basic_auth_username": "u", "basic_auth_password": "p"},
        env={"HUBBLE_BASIC_AUTH_USERNAME": "u", "HUBBLE_BASIC_AUTH_PASSWORD": "p"},
    ),
    Case(
        "basic auth file",
        {"basic_auth_username": "u", "basic_auth_password": "p"},
        file={"basic-auth-username": "u", "basic-auth-password": "p"},
    ),
    # port forwarding
    Case(
        "port-forward default",
        {
            "port_forward": False,
            "port_forward_port": 4245,
            "kube_namespace": "kube-system",
            "kube_context": "",
        },
    ),
    Case("port-forward flag", {"port_forward": True}, argv=["-P"]),
    Case("port-forward env", {"port_forward": True}, env={"HUBBLE_PORT_FORWARD": "true"}),
    Case("port-forward file", {"port_forward": True}, file={"port-forward": True}),
    Case("port-forward-port flag", {"port_forward_port": 0}, argv=["--port-forward-port", "0"]),
    Case("port-forward-port env hex", {"port_forward_port": 16}, env={"HUBBLE_PORT_FORWARD_PORT": "0x10"}),
    Case("port-forward-port env unreadable", {"port_forward_port": 0}, env={"HUBBLE_PORT_FORWARD_PORT": "x"}),
    Case("port-forward-port file", {"port_forward_port": 5000}, file={"port-forward-port": 5000}),
    Case("kube-context flag", {"kube_context": "kind"}, argv=["--kube-context", "kind"]),
    Case("kube-context env", {"kube_context": "kind"}, env={"HUBBLE_KUBE_CONTEXT": "kind"}),
    Case("kube-namespace file", {"kube_namespace": "cilium"}, file={"kube-namespace": "cilium"}),
    Case("kube-namespace env", {"kube_namespace": "cilium"}, env={"HUBBLE_KUBE_NAMESPACE": "cilium"}),
    Case("kubeconfig flag", {"kubeconfig": "/k"}, argv=["--kubeconfig", "/k"]),
    Case("kubeconfig file", {"kubeconfig": "/k"}, file={"kubeconfig": "/k"}),
]


def test_every_setting_has_a_row():
    covered = {key.replace("_", "-") for case in CASES for key in case.expect}
    covered = {k.removesuffix("-s") for k in covered}
    assert set(KEYS) - {"config", "debug"} <= covered, set(KEYS) - covered


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_setting(case: Case, command: str, tmp_path) -> None:
    env = dict(NO_HOME)
    env.update(case.env)
    argv = list(case.argv)
    if case.file is not None:
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(case.file))
        env["HUBBLE_CONFIG"] = str(path)
    conn = COMMANDS[command](argv, env)
    got = {key: getattr(conn, key) for key in case.expect}
    assert (
        got == pytest.approx(case.expect)
        if any(isinstance(v, float) for v in case.expect.values())
        else got == case.expect
    )


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_config_flag_beats_the_variable(command: str, tmp_path) -> None:
    chosen, other = tmp_path / "chosen.yaml", tmp_path / "other.yaml"
    chosen.write_text("server: chosen:1\n")
    other.write_text("server: other:1\n")
    conn = COMMANDS[command](["--config", str(chosen)], {**NO_HOME, "HUBBLE_CONFIG": str(other)})
    assert conn.server == "chosen:1"


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--basic-auth-username", "u"], "invalid flag(s): must specify both basic-auth-username and basic-auth-password"),
        (["--tls-client-cert-file", "c"], "invalid flag(s): certificate and private key are both required, but only one was provided"),
        (["--tls-client-cert-file", "c", "--tls-client-key-file", "k"], "invalid flag(s): transport layer security required"),
        (["-P=maybe"], 'invalid argument "maybe" for "-P, --port-forward" flag: strconv.ParseBool: parsing "maybe": invalid syntax'),
        (["--timeout", "soon"], 'invalid argument "soon" for "--timeout" flag: time: invalid duration "soon"'),
    ],
)  # fmt: skip
def test_flag_errors_have_one_wording(command: str, argv: list[str], message: str) -> None:
    from hubblepy.cli.connection import LiveError

    with pytest.raises((UsageError, LiveError)) as info:
        COMMANDS[command](argv, NO_HOME)
    assert str(info.value) == message


def test_settings_typed_values_for_config_view(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("timeout: 7\ntls-ca-cert-files: [a, b]\nport-forward-port: '0x10'\n")
    settings = Settings({**NO_HOME, "HUBBLE_TLS": "yes"}, config_flag=str(path))
    assert settings.typed("timeout") == "7ns"
    assert settings.typed("tls-ca-cert-files") == ["a", "b"]
    assert settings.typed("port-forward-port") == 16
    assert settings.typed("tls") is False
    assert settings.typed("config") == str(path)
