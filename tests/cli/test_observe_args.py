"""`hubble observe` argument parsing: pflag forms, upstream error texts, filters built from flags."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hubbletest import FIXTURES

from hubblepy.cli.observe_args import (
    ALL_FLOWS,
    HelpRequested,
    ObserveArgs,
    UsageError,
    parse_observe_args,
    render_raw_filters,
)

NOW = datetime(2024, 3, 1, tzinfo=UTC)
NO_CONFIG = {"XDG_CONFIG_HOME": "/nonexistent-hubblepy-test-config", "HOME": "/nonexistent-home"}


def parse(*argv: str, env: dict[str, str] | None = None) -> ObserveArgs:
    return parse_observe_args(list(argv), NO_CONFIG if env is None else env, now=NOW)


def error_of(*argv: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(UsageError) as info:
        parse(*argv, env=env)
    return str(info.value)


def raw(*argv: str) -> str:
    args = parse("--print-raw-filters", *argv)
    assert args.print_raw_filters
    return args.raw_filters_yaml()


# --- upstream fixture cases ------------------------------------------------------------------


def _cases() -> list[dict]:
    path = FIXTURES / "expected" / "cases.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


CASES = _cases()
# Errors that upstream raises only when it compiles the filters (hubblepy.filters' job).
COMPILE_TIME_ERRORS = {"err-cidr-out-of-range", "err-http-with-non-l7-type"}


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_fixture_case_arguments(case: dict) -> None:
    argv = ["--input-file", "flows.jsonl", *case["args"]]
    if case["exit_code"] == 0 or case["name"] in COMPILE_TIME_ERRORS:
        args = parse(*argv)
        assert args.input_file == "flows.jsonl"
        assert args.number != 20 or "--last" in case["args"] or "--first" in case["args"]
    else:
        assert case["stderr_contains"] in error_of(*argv)


# --- exact error texts (as upstream hubble 1.19 prints them) -------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--verdict", "dropped"],
            'invalid argument "dropped" for "--verdict" flag: invalid --verdict value: dropped',
        ),
        (
            ["--drop-reason-desc", ""],
            'invalid argument "" for "--drop-reason-desc" flag: empty --drop-reason-desc value',
        ),
        (
            ["--drop-reason-desc", "NOPE"],
            'invalid argument "NOPE" for "--drop-reason-desc" flag: invalid --drop-reason-desc value: NOPE',
        ),
        (["--no-such-flag"], "unknown flag: --no-such-flag"),
        (["--no-such-flag=1"], "unknown flag: --no-such-flag"),
        (["-x"], "unknown shorthand flag: 'x' in -x"),
        (["-fx"], "unknown shorthand flag: 'x' in -x"),
        (["--output"], "flag needs an argument: --output"),
        (["-o"], "flag needs an argument: 'o' in -o"),
        (["---x"], "bad flag syntax: ---x"),
        (["--=x"], "bad flag syntax: --=x"),
        (["--verdict", "DROPPED", "--not"], "trailing --not found in the arguments"),
        (["--not", "--output", "json"], "trailing --not found in the arguments"),
        (["--not", "--not"], 'invalid argument "true" for "--not" flag: consecutive --not statements'),
        (["--not", "--not=false"], 'invalid argument "false" for "--not" flag: consecutive --not statements'),
        (["--first", "1", "--last", "1"], "cannot set both --first and --last"),
        (["--first", "1", "--all"], "cannot set both --first and --all"),
        (["--last", "1", "--all"], "cannot set both --last and --all"),
        (["--first", "1", "--follow"], "cannot set both --first and --follow"),
        (["-o", "table", "--follow"], "table output format is not compatible with follow mode"),
        (["-o", "tab", "-f"], "table output format is not compatible with follow mode"),
        (["-o", "yaml"], "invalid output format: yaml"),
        (["-o", "Json"], "invalid output format: Json"),
        (["-o", "TABLE"], "invalid output format: TABLE"),
        (["--field-mask", "verdict"], "compact output format is not compatible with custom field mask"),
        (
            ["-o", "tab", "--field-mask", "verdict"],
            "tab output format is not compatible with custom field mask",
        ),
        (
            ["-o", "json", "--field-mask", "bogus"],
            'failed to construct field mask: proto: invalid path "bogus" for message "flow.Flow"',
        ),
        (
            ["-o", "json", "--field-mask", "source.bogus"],
            'failed to construct field mask: proto: invalid path "source.bogus" for message "flow.Flow"',
        ),
        (
            ["--print-node-name=maybe"],
            'invalid argument "maybe" for "--print-node-name" flag: strconv.ParseBool: parsing "maybe": invalid syntax',
        ),
        (
            ["--last", "-3"],
            'invalid argument "-3" for "--last" flag: strconv.ParseUint: parsing "-3": invalid syntax',
        ),
        (
            ["--first", "99999999999999999999"],
            'invalid argument "99999999999999999999" for "--first" flag: strconv.ParseUint: parsing "99999999999999999999": value out of range',
        ),
        (
            ["--from-pod", "x", "--pod", "y"],
            'invalid argument "y" for "--pod" flag: filters --from-pod and --pod cannot be combined',
        ),
        (
            ["--namespace", "other", "--pod", "shop/x"],
            'invalid argument "shop/x" for "--pod" flag: namespace conflict: "other" does not contain "shop/x"',
        ),
        (
            ["--from-namespace", "other", "--from-service", "shop/x"],
            'invalid argument "shop/x" for "--from-service" flag: namespace conflict: "other" does not contain "shop/x"',
        ),
        (
            ["--http-header", "nocolon"],
            'invalid argument "nocolon" for "--http-header" flag: invalid http-header value "nocolon", expected name:value',
        ),
        (
            ["--traffic-direction", "north"],
            'invalid argument "north" for "--traffic-direction" flag: north: invalid traffic direction, expected ingress or egress',
        ),
        (
            ["--traffic-direction", "NORTH"],
            'invalid argument "NORTH" for "--traffic-direction" flag: north: invalid traffic direction, expected ingress or egress',
        ),
        (
            ["--tcp-flags", "syn,bogus"],
            'invalid argument "syn,bogus" for "--tcp-flags" flag: unknown tcp flag: bogus',
        ),
        (
            ["--identity", "nobody"],
            'invalid argument "nobody" for "--identity" flag: invalid security identity, expected one of [host world unmanaged health init remote-node kube-apiserver ingress world-ipv4 world-ipv6 11] or a numeric value',
        ),
        (
            ["--to-identity", "unknown"],
            'invalid argument "unknown" for "--to-identity" flag: invalid security identity, expected one of [host world unmanaged health init remote-node kube-apiserver ingress world-ipv4 world-ipv6 11] or a numeric value',
        ),
        (
            ["--ip-trace-id", "0"],
            'invalid argument "0" for "--ip-trace-id" flag: invalid --ip-trace-id value; must be greater than 0',
        ),
        (
            ["--ip-trace-id", "x"],
            'invalid argument "x" for "--ip-trace-id" flag: invalid --ip-trace-id value: strconv.ParseUint: parsing "x": invalid syntax',
        ),
        (
            ["--type", "foo"],
            'invalid argument "foo" for "-t, --type" flag: unable to parse type \'foo\', not a known type name and unable to parse as numeric value: strconv.ParseUint: parsing "foo": invalid syntax',
        ),
        (
            ["-t", "trace:bogus"],
            'invalid argument "trace:bogus" for "-t, --type" flag: unable to parse event sub-type \'bogus\', not a known sub-type name and unable to parse as numeric value: strconv.ParseUint: parsing "bogus": invalid syntax',
        ),
        # a sub-type name is only looked up when the type itself was given by name
        (
            ["-t", "4:to-endpoint"],
            'invalid argument "4:to-endpoint" for "-t, --type" flag: unable to parse event sub-type \'to-endpoint\', not a known sub-type name and unable to parse as numeric value: strconv.ParseUint: parsing "to-endpoint": invalid syntax',
        ),
        (
            ["--allowlist", '{"bogus":1}'],
            'invalid --allowlist flag: failed to decode \'{"bogus":1}\': proto: (line 1:2): unknown field "bogus"',
        ),
        (["--allowlist", "{"], "invalid --allowlist flag: failed to decode '{': unexpected EOF"),
        (
            ["--denylist", "[1]"],
            "invalid --denylist flag: failed to decode '[1]': proto: syntax error (line 1:1): unexpected token [",
        ),
        (
            ["--since", "last tuesday"],
            "failed to parse the since time: failed to convert last tuesday to time",
        ),
        (["--until", "yesterday"], "failed to parse the until time: failed to convert yesterday to time"),
        (["--timeout", "5"], 'invalid argument "5" for "--timeout" flag: time: missing unit in duration "5"'),
        (
            ["--tls-client-cert-file", "c.pem"],
            "invalid flag(s): certificate and private key are both required, but only one was provided",
        ),
        (
            ["--tls-client-cert-file", "c.pem", "--tls-client-key-file", "k.pem"],
            "invalid flag(s): transport layer security required",
        ),
        (
            ["--basic-auth-username", "u"],
            "invalid flag(s): must specify both basic-auth-username and basic-auth-password",
        ),
    ],
)
def test_error_messages(argv: list[str], message: str) -> None:
    assert error_of(*argv) == message


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--namespace", "a", "--from-namespace", "b"],
            "filters --from-namespace and --namespace cannot be combined",
        ),
        (["-A", "--namespace", "x"], "filters --namespace and --all-namespaces cannot be combined"),
        (["--fqdn", "a.com", "--to-pod", "x"], "filters --fqdn and --to-pod cannot be combined"),
        (
            ["--ip", "1.1.1.1", "--from-namespace", "x"],
            "filters --ip and --from-namespace cannot be combined",
        ),
        (
            ["--to-ip", "1.1.1.1", "--to-all-namespaces"],
            "filters --to-ip and --to-all-namespaces cannot be combined",
        ),
        (["--from-pod", "x", "-n", "y"], "filters --from-pod and --namespace cannot be combined"),
        (["--to-service", "x", "-A"], "filters --to-service and --all-namespaces cannot be combined"),
        (["-l", "a=b", "--to-label", "c"], "filters --label and --to-label cannot be combined"),
        (
            ["--service", "a", "--from-service", "b"],
            "filters --service and --from-service cannot be combined",
        ),
        (["--port", "1", "--to-port", "2"], "filters --port and --to-port cannot be combined"),
        (
            ["--identity", "1", "--from-identity", "2"],
            "filters --identity and --from-identity cannot be combined",
        ),
        (
            ["--workload", "a", "--to-workload", "b"],
            "filters --workload and --to-workload cannot be combined",
        ),
        (["--encrypted", "--unencrypted"], "filters --encrypted and --unencrypted cannot be combined"),
    ],
)
def test_conflict_groups(argv: list[str], message: str) -> None:
    assert error_of(*argv).endswith(f"flag: {message}")


@pytest.mark.parametrize(
    "argv",
    [
        ["--from-ip", "1.1.1.1", "--to-ip", "2.2.2.2"],
        ["--from-ip", "1.1.1.1", "--to-namespace", "x"],
        ["--from-fqdn", "a.com", "--to-pod", "x"],
        ["--from-namespace", "a", "--from-service", "b"],
        ["--verdict", "DROPPED", "--verdict", "AUDIT"],
        ["--pod", "a", "--pod", "b"],
        # the checks apply to the allow and the deny list separately
        ["--from-pod", "x", "--not", "--pod", "y"],
        ["--namespace", "a", "--not", "--from-namespace", "b"],
    ],
)
def test_combinations_that_are_allowed(argv: list[str]) -> None:
    parse(*argv)


# --- --print-raw-filters (byte for byte) ------------------------------------------------------------


def test_print_raw_filters_examples() -> None:
    assert raw("--namespace", "payments", "--pod", "api", "--service", "db") == (
        "allowlist:\n"
        '    - \'{"source_pod":["payments/api"],"source_service":["payments/db"]}\'\n'
        '    - \'{"destination_pod":["payments/api"],"destination_service":["payments/db"]}\'\n'
    )
    assert raw("--not", "--namespace", "kube-system", "--not", "--verdict", "FORWARDED") == (
        "denylist:\n"
        '    - \'{"source_pod":["kube-system/"],"verdict":["FORWARDED"]}\'\n'
        '    - \'{"destination_pod":["kube-system/"],"verdict":["FORWARDED"]}\'\n'
    )
    assert raw("--tcp-flags", "syn,ack", "--tcp-flags", "fin") == (
        'allowlist:\n    - \'{"tcp_flags":[{"SYN":true,"ACK":true},{"FIN":true}]}\'\n'
    )
    assert raw("--type", "trace:to-endpoint", "--type", "129", "--type", "drop:133") == (
        "allowlist:\n"
        '    - \'{"event_type":[{"type":4,"match_sub_type":true},{"type":129},'
        '{"type":1,"match_sub_type":true,"sub_type":133}]}\'\n'
    )
    assert raw() == "{}\n"


def test_print_raw_filters_both_lists_and_quoting() -> None:
    text = raw("--http-path", "it's<&>", "--not", "--verdict", "DROPPED")
    assert text == (
        "allowlist:\n"
        "    - '{\"http_path\":[\"it''s\\u003c\\u0026\\u003e\"]}'\n"
        "denylist:\n"
        '    - \'{"verdict":["DROPPED"]}\'\n'
    )


def test_render_raw_filters_escapes_non_printable_text() -> None:
    out = render_raw_filters([{"uuid": ["a\x7fb"]}], [])
    assert out == 'allowlist:\n    - "{\\"uuid\\":[\\"a\\x7Fb\\"]}"\n'


# --- filters built from flags ----------------------------------------------------------------


def test_keys_follow_flow_filter_declaration_order() -> None:
    args = parse("--verdict", "DROPPED", "--uuid", "u", "--to-port", "53", "--from-ip", "10.0.0.1")
    assert list(args.allow[0]) == ["uuid", "source_ip", "verdict", "destination_port"]


def test_either_side_flag_copies_the_other_flags() -> None:
    args = parse("--verdict", "DROPPED", "--ip", "10.0.0.1", "--protocol", "tcp")
    assert args.allow == [
        {"source_ip": ["10.0.0.1"], "verdict": ["DROPPED"], "protocol": ["tcp"]},
        {"destination_ip": ["10.0.0.1"], "verdict": ["DROPPED"], "protocol": ["tcp"]},
    ]


def test_identical_left_and_right_collapse() -> None:
    assert parse("--verdict", "DROPPED", "--verdict", "AUDIT").allow == [{"verdict": ["DROPPED", "AUDIT"]}]
    assert parse("--from-namespace", "cde").allow == [{"source_pod": ["cde/"]}]


@pytest.mark.parametrize(
    ("argv", "allow"),
    [
        (
            ["--from-namespace", "payments", "--from-pod", "payments-worker"],
            [{"source_pod": ["payments/payments-worker"]}],
        ),
        (
            ["--namespace", "payments", "--service", "payments-api"],
            [
                {"source_service": ["payments/payments-api"]},
                {"destination_service": ["payments/payments-api"]},
            ],
        ),
        (["--pod", "frontend"], [{"source_pod": ["frontend"]}, {"destination_pod": ["frontend"]}]),
        (["-A"], [{"source_pod": ["/"]}, {"destination_pod": ["/"]}]),
        (["-A=false"], [{"source_pod": ["/"]}, {"destination_pod": ["/"]}]),
        (["--to-all-namespaces"], [{"destination_pod": ["/"]}]),
        (
            ["--from-namespace", "a", "--to-namespace", "b"],
            [{"source_pod": ["a/"], "destination_pod": ["b/"]}],
        ),
        (
            ["--to-namespace", "a", "--to-namespace", "b", "--to-pod", "x", "--to-pod", "/y"],
            [{"destination_pod": ["a/x", "b/x", "/y"]}],
        ),
        (
            ["-n", "kube-system", "--verdict", "DROPPED"],
            [
                {"source_pod": ["kube-system/"], "verdict": ["DROPPED"]},
                {"destination_pod": ["kube-system/"], "verdict": ["DROPPED"]},
            ],
        ),
        (
            ["--from-namespace", "a", "--to-service", "s"],
            [{"source_pod": ["a/"], "destination_service": ["s"]}],
        ),
    ],
)
def test_namespaces(argv: list[str], allow: list[dict]) -> None:
    assert parse(*argv).allow == allow


def test_not_combinations() -> None:
    two_flags = parse("--not", "--verdict", "FORWARDED", "--not", "--namespace", "payments")
    assert two_flags.allow == []
    assert two_flags.deny == [
        {"source_pod": ["payments/"], "verdict": ["FORWARDED"]},
        {"destination_pod": ["payments/"], "verdict": ["FORWARDED"]},
    ]
    same_flag = parse("--not", "--verdict", "FORWARDED", "--not", "--verdict", "DROPPED")
    assert same_flag.deny == [{"verdict": ["FORWARDED", "DROPPED"]}]
    mixed = parse("--verdict", "DROPPED", "--not", "--to-port", "53", "--protocol", "udp")
    assert mixed.allow == [{"verdict": ["DROPPED"], "protocol": ["udp"]}]
    assert mixed.deny == [{"destination_port": ["53"]}]
    # --not ignores its value; a non-filter flag in between does not consume it
    assert parse("--not=false", "-o", "json", "--verdict", "AUDIT").deny == [{"verdict": ["AUDIT"]}]


def test_value_encodings() -> None:
    args = parse(
        "--ip-trace-id",
        "51234",
        "--to-identity",
        "world-ipv6",
        "--from-identity",
        "0x10",
        "--ip-version",
        "v6",
        "-4",
        "-6=whatever",
        "--ip-version",
        "none",
        "--http-header",
        "a:b:c",
        "--http-header",
        ":",
        "--workload",
        "Deployment/",
        "--interface",
        "eth0",
        "--encrypted=false",
        "--traffic-direction",
        "Ingress",
        "--cel-expression",
        "x",
        "--type",
        "agent:policy-updated",
        "--type",
        "0",
        "--type",
        "4294967295",
    )
    assert args.allow[0] == {
        "source_workload": [{"kind": "Deployment"}],
        "traffic_direction": ["INGRESS"],
        "interface": [{"name": "eth0"}],
        "event_type": [{"type": 130, "match_sub_type": True, "sub_type": 3}, {}, {"type": -1}],
        "source_identity": [16],
        "destination_identity": [10],
        "http_header": [{"key": "a", "value": "b:c"}, {}],
        "ip_version": ["IPv6", "IPv4", "IPv6", "IP_NOT_USED"],
        "ip_trace_id": ["51234"],
        "encrypted": [True],
        "experimental": {"cel_expression": ["x"]},
    }


def test_raw_filters_are_ored_with_flag_filters() -> None:
    args = parse("--verdict", "AUDIT", "--allowlist", '{"source_pod":["cde/"],"verdict":["DROPPED"]}')
    assert args.allow == [{"verdict": ["AUDIT"]}, {"source_pod": ["cde/"], "verdict": ["DROPPED"]}]
    args = parse("--denylist", '{"destinationPort":["53"]}{"reply":[false]}', "--from-namespace", "default")
    assert args.allow == [{"source_pod": ["default/"]}]
    assert args.deny == [{"destination_port": ["53"]}, {"reply": [False]}]


def test_raw_filters_from_environment_and_config(tmp_path) -> None:
    env = dict(
        NO_CONFIG, HUBBLE_ALLOWLIST='{"uuid":["a"]} {"uuid":["b"]}', HUBBLE_DENYLIST='{"verdict":["ERROR"]}'
    )
    args = parse(env=env)
    assert args.allow == [{"uuid": ["a"]}, {"uuid": ["b"]}]
    assert args.deny == [{"verdict": ["ERROR"]}]
    # the flag wins over the environment
    assert parse("--allowlist", '{"uuid":["c"]}', env=env).allow == [{"uuid": ["c"]}]
    # the environment value is split at white space, like upstream does
    assert error_of(env=dict(NO_CONFIG, HUBBLE_ALLOWLIST='{"uuid": ["a"]}')) == (
        "invalid --allowlist flag: failed to decode '{\"uuid\":': unexpected EOF"
    )

    config_dir = tmp_path / "hubble"
    config_dir.mkdir()
    (config_dir / "config.yaml").write_text(
        'allowlist:\n  - \'{"uuid":["from-config"]}\'\ndebug: true\nserver: relay:4245\n'
    )
    args = parse(env={"XDG_CONFIG_HOME": str(tmp_path)})
    assert args.allow == [{"uuid": ["from-config"]}]
    assert args.debug is True
    assert args.connection.server == "relay:4245"
    assert args.config_file_used == str(config_dir / "config.yaml")
    other = tmp_path / "other.yaml"
    other.write_text('denylist: \'{"uuid":["x"]}\'\n')
    args = parse("--config", str(other), env={"XDG_CONFIG_HOME": str(tmp_path)})
    assert args.allow == [] and args.deny == [{"uuid": ["x"]}]
    assert args.debug is False
    args = parse("--debug=false", env={"XDG_CONFIG_HOME": str(tmp_path), "HUBBLE_SERVER": "env:1"})
    assert args.debug is False and args.connection.server == "env:1"


# --- pflag forms -----------------------------------------------------------------------------------


def test_short_flag_forms() -> None:
    expected = [{"source_pod": ["cde/"]}, {"destination_pod": ["cde/"]}]
    assert parse("-n", "cde").allow == expected
    assert parse("-ncde").allow == expected
    assert parse("-n=cde").allow == expected
    assert parse("--namespace=cde").allow == expected
    grouped = parse("-fDs")
    assert grouped.follow and grouped.debug and grouped.silent_errors
    assert parse("-4=v6").allow == [{"ip_version": ["IPv4"]}]
    assert parse("-t", "drop").allow == [{"event_type": [{"type": 1}]}]


def test_boolean_flags_take_values_only_with_equals() -> None:
    spaced = parse("--ip-translation", "false")
    assert spaced.ip_translation is True and spaced.positional == ["false"]
    assert parse("--ip-translation=false").ip_translation is False
    assert parse("--numeric").ip_translation is False
    assert parse("--numeric=F").numeric is False
    assert parse("--print-node-name=1").print_node_name is True


def test_positional_words_and_double_dash() -> None:
    args = parse("flows", "--verdict", "DROPPED", "extra", "--", "--verdict", "AUDIT")
    assert args.allow == [{"verdict": ["DROPPED"]}]
    assert args.positional == ["flows", "extra", "--verdict", "AUDIT"]
    assert parse("-").positional == ["-"]


def test_help() -> None:
    with pytest.raises(HelpRequested):
        parse("--help")
    with pytest.raises(HelpRequested):
        parse("-h")
    assert error_of("-h", "--bogus") == "unknown flag: --bogus"
    parse("--help=false")


def test_repeated_flags() -> None:
    args = parse(
        "--input-file",
        "a",
        "--input-file",
        "b",
        "-o",
        "dict",
        "-o",
        "json",
        "--field-mask",
        "time,verdict",
        "--field-mask",
        "source.namespace",
    )
    assert args.input_file == "b"
    assert args.output == "json"
    assert args.field_mask == ["time", "verdict", "source.namespace"]


# --- output and selection ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "output", "jsonpb"),
    [
        ("compact", "compact", False),
        ("dict", "dict", False),
        ("tab", "table", False),
        ("table", "table", False),
        ("json", "json", False),
        ("JSON", "json", False),
        ("jsonpb", "json", True),
    ],
)
def test_output_formats(flag: str, output: str, jsonpb: bool) -> None:
    args = parse("-o", flag)
    assert (args.output, args.jsonpb, args.output_flag, args.legacy_json) == (output, jsonpb, flag, False)


def test_legacy_json_compat() -> None:
    env = dict(NO_CONFIG, HUBBLE_COMPAT="foo,Legacy-JSON-Output")
    assert parse("-o", "json", env=env).legacy_json is True
    assert parse("-o", "jsonpb", env=env).legacy_json is False


def test_selection_numbers() -> None:
    assert parse().number == 20  # live mode default
    assert parse("--input-file", "x").number == 0  # never a default with a file
    assert parse("--follow").number == 0
    assert parse("--since", "1h").number == 0
    assert parse("--all").number == ALL_FLOWS
    first = parse("--first", "4", "--input-file", "x")
    assert (first.number, first.first_mode, first.file_first, first.file_last) == (4, True, 4, 0)
    last = parse("--last", "3", "--input-file", "x")
    assert (last.number, last.first_mode, last.file_first, last.file_last) == (3, False, 0, 3)
    assert parse("--first", "0", "--last", "0", "--input-file", "x").number == 0
    assert parse("--last", "0x10").last == 16
    follow = parse("--follow", "--last", "2", "--input-file", "x")
    assert follow.file_last == 2


def test_follow_ignores_until_without_parsing_it() -> None:
    args = parse("--follow", "--until", "garbage", "--since", "2024-02-29")
    assert args.until_ns is None and args.until == "garbage"
    assert args.since_ns == 1709164800 * 10**9


def test_since_until_values() -> None:
    args = parse("--since", "90s", "--until", "2024-03-01T00:00:06.828926466Z")
    assert args.since_ns == 1709251200 * 10**9 - 90 * 10**9
    assert args.until_ns == 1709251206 * 10**9 + 828_926_466


def test_file_last_limit() -> None:
    parse("--last", "1000000", "--input-file", "x").check_file_last_limit()
    parse("--all", "--input-file", "x").check_file_last_limit()
    with pytest.raises(UsageError) as info:
        parse("--last", "2000000", "--input-file", "x").check_file_last_limit()
    assert str(info.value) == "--last must be <= 1_000_000, got 2000000"


def test_connection_defaults_and_flags() -> None:
    args = parse()
    conn = args.connection
    assert (conn.server, conn.timeout_s, conn.request_timeout_s, conn.tls) == (
        "localhost:4245",
        5.0,
        12.0,
        False,
    )
    args = parse(
        "--server",
        "tls://relay:443",
        "--timeout",
        "1m",
        "--tls-ca-cert-files",
        "a.pem,b.pem",
        "--tls-client-cert-file",
        "c",
        "--tls-client-key-file",
        "k",
        "--port-forward-port",
        "0x10",
    )
    conn = args.connection
    assert conn.server == "tls://relay:443"
    assert conn.timeout_s == 60.0
    assert conn.tls_ca_cert_files == ["a.pem", "b.pem"]
    assert conn.port_forward_port == 16


def test_formatting_options() -> None:
    args = parse("--time-format", "rfc3339nano", "--color", "always", "--print-policy-names", "--jq", ".flow")
    assert (args.time_format, args.color, args.print_policy_names, args.jq) == (
        "rfc3339nano",
        "always",
        True,
        ".flow",
    )
    assert parse(env=dict(NO_CONFIG, HUBBLE_DEBUG="true")).debug is True


def test_request_field_mask() -> None:
    assert parse().request_field_mask[:2] == ["time", "verdict"]
    assert parse("--use-default-field-masks=false").request_field_mask == []
    assert parse("-o", "json").request_field_mask == []
    assert parse("-o", "jsonpb", "--field-mask", "time,IP").request_field_mask == ["time", "IP"]


def test_time_bounds_outside_the_timestamp_range() -> None:
    assert error_of("--since", "0000-01-01") == (
        "failed to convert `since` timestamp to proto: proto: timestamp (seconds:-62167219200) before 0001-01-01"
    )
    assert parse("--until", "9999-12-31T23:59:59Z").until_ns == 253402300799 * 10**9
