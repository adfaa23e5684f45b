"""Command-line parsing for `hubble observe [flows]`, compatible with upstream's Go pflag/cobra.

Upstream's flag handling has semantics that click/typer cannot reproduce, so this is a small
pflag-style parser:

* ``--flag value`` and ``--flag=value``; short flags as ``-n x``, ``-nx`` and ``-n=x``; short
  booleans can be grouped (``-fD``); ``--`` ends the flags; other words are positional and ignored;
* boolean flags (and ``--not``, ``-A``, ``-4``/``-6``, ``--encrypted``...) take a value only after
  ``=``: ``--numeric false`` leaves ``false`` as an ignored positional word;
* flags are applied in command-line order, so ``--not`` negates the *next* filter flag;
* errors carry upstream's exact one-line text (``unknown flag: --x``, ``invalid argument "v" for
  "-t, --type" flag: ...``).

After parsing, the same checks as upstream run in upstream's order (output format, field mask,
``--first``/``--last``/``--all``/``--follow``, ``--since``/``--until``, raw filters from flags,
``HUBBLE_ALLOWLIST``/``HUBBLE_DENYLIST`` and the config file). The result is an
:class:`ObserveArgs` holding canonical FlowFilter allow/deny lists and every option the command
needs. Filter *compilation* (IP, port, regex, label checks) is not done here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hubblepy.cli.filter_flags import FILTER_FLAG_NAMES, FilterBuilder, FilterFlagError, go_parse_uint
from hubblepy.cli.timeparse import (
    DurationError,
    TimeParseError,
    go_quote,
    parse_go_duration,
    parse_time_bound,
)

__all__ = [
    "HelpRequested",
    "ObserveArgs",
    "UsageError",
    "parse_observe_args",
    "render_raw_filters",
]

DEFAULT_SERVER = "localhost:4245"
DEFAULT_DIAL_TIMEOUT_NS = 5_000_000_000
DEFAULT_REQUEST_TIMEOUT_NS = 12_000_000_000
DEFAULT_LAST_LIVE = 20
ALL_FLOWS = (1 << 64) - 1
MAX_FILE_LAST = 1_000_000
TLS_PREFIX = "tls://"
#: Paths the CLI asks for with compact, dict and table output (``--use-default-field-masks``).
DEFAULT_FIELD_MASK = (
    "time",
    "verdict",
    "ethernet",
    "IP",
    "l4",
    "source.identity",
    "source.namespace",
    "source.pod_name",
    "destination.identity",
    "destination.namespace",
    "destination.pod_name",
    "Type",
    "node_name",
    "l7",
    "event_type",
    "source_service",
    "destination_service",
    "is_reply",
    "Summary",
    "ip_trace_id",
)


class UsageError(Exception):
    """A command-line error; ``str()`` is upstream's exact one-line stderr message."""


class HelpRequested(Exception):
    """``-h``/``--help`` was given (and no flag error came first)."""


@dataclass(frozen=True)
class FlagSpec:
    """One command-line flag: its long name, optional one-letter short name and value kind."""

    name: str
    kind: str  # filter, bool, string, uint64, uint16, duration, string_slice, string_array
    short: str = ""
    no_opt_default: str = ""

    @property
    def spelling(self) -> str:
        """The flag as upstream names it in error messages (``-t, --type`` or ``--verdict``)."""
        return f"-{self.short}, --{self.name}" if self.short else f"--{self.name}"


_FILTER_SHORTS = {
    "type": "t",
    "namespace": "n",
    "label": "l",
    "ipv4": "4",
    "ipv6": "6",
    "all-namespaces": "A",
}
_FILTER_NO_OPT = {
    "not": "true",
    "ipv4": "v4",
    "ipv6": "v6",
    "all-namespaces": "true",
    "from-all-namespaces": "true",
    "to-all-namespaces": "true",
    "encrypted": "true",
    "unencrypted": "true",
}

_OTHER_FLAGS = (
    # selectors
    FlagSpec("all", "bool"),
    FlagSpec("last", "uint64"),
    FlagSpec("first", "uint64"),
    FlagSpec("follow", "bool", "f"),
    FlagSpec("since", "string"),
    FlagSpec("until", "string"),
    # formatting
    FlagSpec("output", "string", "o"),
    FlagSpec("print-node-name", "bool"),
    FlagSpec("print-policy-names", "bool"),
    FlagSpec("time-format", "string"),
    FlagSpec("numeric", "bool"),
    FlagSpec("ip-translation", "bool"),
    FlagSpec("color", "string"),
    # raw filters
    FlagSpec("allowlist", "string_array"),
    FlagSpec("denylist", "string_array"),
    # other
    FlagSpec("silent-errors", "bool", "s"),
    FlagSpec("print-raw-filters", "bool"),
    FlagSpec("input-file", "string"),
    FlagSpec("field-mask", "string_slice"),
    FlagSpec("use-default-field-masks", "bool"),
    FlagSpec("jq", "string"),  # our extension
    FlagSpec("strict-last", "bool"),  # our extension: exact global --last N through a hubblepy relay
    # global
    FlagSpec("config", "string"),
    FlagSpec("debug", "bool", "D"),
    FlagSpec("help", "bool", "h"),
    # server connection
    FlagSpec("server", "string"),
    FlagSpec("timeout", "duration"),
    FlagSpec("request-timeout", "duration"),
    FlagSpec("tls", "bool"),
    FlagSpec("tls-allow-insecure", "bool"),
    FlagSpec("tls-ca-cert-files", "string_slice"),
    FlagSpec("tls-client-cert-file", "string"),
    FlagSpec("tls-client-key-file", "string"),
    FlagSpec("tls-server-name", "string"),
    FlagSpec("basic-auth-username", "string"),
    FlagSpec("basic-auth-password", "string"),
    FlagSpec("port-forward", "bool"),
    FlagSpec("port-forward-port", "uint16"),
    FlagSpec("kube-context", "string"),
    FlagSpec("kube-namespace", "string"),
    FlagSpec("kubeconfig", "string"),
)


def _build_flag_tables() -> tuple[dict[str, FlagSpec], dict[str, FlagSpec]]:
    specs = [
        FlagSpec(name, "filter", _FILTER_SHORTS.get(name, ""), _FILTER_NO_OPT.get(name, ""))
        for name in sorted(FILTER_FLAG_NAMES)
    ]
    for spec in _OTHER_FLAGS:
        if spec.kind == "bool":
            spec = FlagSpec(spec.name, spec.kind, spec.short, "true")
        specs.append(spec)
    by_name = {spec.name: spec for spec in specs}
    by_short = {spec.short: spec for spec in specs if spec.short}
    return by_name, by_short


FLAGS_BY_NAME, FLAGS_BY_SHORT = _build_flag_tables()


@dataclass
class ObserveArgs:
    """Everything `hubble observe` needs, as upstream would have understood the command line."""

    allow: list[dict] = field(default_factory=list)
    deny: list[dict] = field(default_factory=list)
    # formatting
    output: str = "compact"  # compact, dict, table or json
    output_flag: str = "compact"  # the value as given (``tab``, ``JSON``, ``jsonpb``...)
    jsonpb: bool = False  # -o jsonpb (never affected by HUBBLE_COMPAT)
    legacy_json: bool = False  # -o json/JSON with HUBBLE_COMPAT=legacy-json-output: bare flows
    time_format: str = "StampMilli"
    color: str = "auto"
    print_node_name: bool = False
    print_policy_names: bool = False
    numeric: bool = False
    ip_translation: bool = True  # already False when --numeric is set
    # selection
    input_file: str | None = None
    since: str | None = None
    until: str | None = None
    since_ns: int | None = None
    until_ns: int | None = None  # None with --follow: --until is ignored, not even parsed
    first: int = 0
    last: int = 0
    all: bool = False
    follow: bool = False
    number: int = 0  # GetFlowsRequest.number as upstream computes it
    first_mode: bool = False  # GetFlowsRequest.first
    field_mask: list[str] = field(default_factory=list)
    use_default_field_masks: bool = True
    # behaviour
    debug: bool = False
    silent_errors: bool = False
    print_raw_filters: bool = False
    jq: str | None = None
    strict_last: bool = False  # --strict-last: N flows in total, newest across all nodes
    # connection (live mode)
    server: str = DEFAULT_SERVER
    timeout_ns: int = DEFAULT_DIAL_TIMEOUT_NS
    request_timeout_ns: int = DEFAULT_REQUEST_TIMEOUT_NS
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
    config: str = ""  # config file path
    config_file_used: str | None = None  # set when a config file was actually read
    # bookkeeping
    changed: set[str] = field(default_factory=set)
    positional: list[str] = field(default_factory=list)

    def raw_filters_yaml(self) -> str:
        """The ``--print-raw-filters`` output."""
        return render_raw_filters(self.allow, self.deny)

    def check_file_last_limit(self) -> None:
        """Upstream's file-mode ``--last`` limit, checked after the filters compiled."""
        if not self.first_mode and self.number not in (0, ALL_FLOWS) and self.number > MAX_FILE_LAST:
            raise UsageError(f"--last must be <= 1_000_000, got {self.number}")

    @property
    def request_field_mask(self) -> list[str]:
        """``GetFlowsRequest.field_mask`` paths for a live request (empty: no mask)."""
        if self.output == "json":
            return list(self.field_mask)
        return list(DEFAULT_FIELD_MASK) if self.use_default_field_masks else []

    @property
    def file_last(self) -> int:
        """With ``--input-file``: keep only the last N records (0 = print as they come)."""
        if self.first_mode or self.number in (0, ALL_FLOWS):
            return 0
        return self.number

    @property
    def file_first(self) -> int:
        """With ``--input-file``: stop after N records (0 = no limit)."""
        return self.number if self.first_mode and self.number != ALL_FLOWS else 0


def _go_parse_bool(text: str) -> bool:
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError(f"strconv.ParseBool: parsing {go_quote(text)}: invalid syntax")


def render_raw_filters(allow: list[dict], deny: list[dict]) -> str:
    """The ``--print-raw-filters`` YAML (the codec is loaded only when asked for)."""
    from hubblepy.cli import raw_filters

    return raw_filters.render_raw_filters(allow, deny)


def _read_csv(text: str) -> list[str]:
    if text == "":
        return []
    import csv  # lazy: start-up time

    try:
        return next(csv.reader([text.split("\n", 1)[0]], strict=True))
    except (csv.Error, StopIteration) as exc:
        raise ValueError(f"parse error: {exc}") from None


def _quote_rune(ch: str) -> str:
    """Go's ``%q`` of a single character (``'x'``)."""
    if ch == "'":
        return "'\\''"
    if ch == '"':
        return "'\"'"
    return "'" + go_quote(ch)[1:-1] + "'"


class _FlagValues:
    """Flag values as set on the command line, in order, with pflag's per-kind semantics."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}  # flag name -> bool, str, int or list[str]
        self.changed: set[str] = set()
        self.filters = FilterBuilder()

    def set(self, spec: FlagSpec, value: str) -> None:
        try:
            self._set(spec, value)
        except (ValueError, FilterFlagError) as exc:
            raise UsageError(
                f"invalid argument {go_quote(value)} for {go_quote(spec.spelling)} flag: {exc}"
            ) from None
        self.changed.add(spec.name)

    def _set(self, spec: FlagSpec, value: str) -> None:
        kind = spec.kind
        if kind == "filter":
            self.filters.set(spec.name, value)
        elif kind == "bool":
            self.values[spec.name] = _go_parse_bool(value)
        elif kind == "string":
            self.values[spec.name] = value
        elif kind == "uint64":
            self.values[spec.name] = go_parse_uint(value, 0, 64)
        elif kind == "uint16":
            self.values[spec.name] = go_parse_uint(value, 0, 16)
        elif kind == "duration":
            try:
                self.values[spec.name] = parse_go_duration(value)
            except DurationError as exc:
                raise ValueError(str(exc)) from None
        elif kind == "string_slice":
            items = _read_csv(value)
            previous = self.values.get(spec.name, []) if spec.name in self.changed else []
            self.values[spec.name] = [*previous, *items]
        elif kind == "string_array":
            previous = self.values.get(spec.name, []) if spec.name in self.changed else []
            self.values[spec.name] = [*previous, value]
        else:  # pragma: no cover - table and setter are kept in sync
            raise ValueError(f"unsupported flag kind {kind}")


def _parse_flags(argv: list[str]) -> tuple[_FlagValues, list[str]]:
    """Walk argv like pflag's parseArgs; return the values and the positional words."""
    values = _FlagValues()
    positional: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if len(arg) < 2 or arg[0] != "-":
            positional.append(arg)
            continue
        if arg[1] == "-":
            if len(arg) == 2:  # "--" ends the flags
                positional.extend(argv[i:])
                break
            body = arg[2:]
            if body[0] in "-=":
                raise UsageError(f"bad flag syntax: {arg}")
            name, has_value, inline = body.partition("=")
            spec = FLAGS_BY_NAME.get(name)
            if spec is None:
                raise UsageError(f"unknown flag: --{name}")
            if has_value:
                value = inline
            elif spec.no_opt_default:
                value = spec.no_opt_default
            elif i < len(argv):
                value = argv[i]
                i += 1
            else:
                raise UsageError(f"flag needs an argument: {arg}")
            values.set(spec, value)
            continue
        shorthands = arg[1:]
        while shorthands:
            letter = shorthands[0]
            rest = shorthands[1:]
            spec = FLAGS_BY_SHORT.get(letter)
            if spec is None:
                raise UsageError(f"unknown shorthand flag: {_quote_rune(letter)} in -{shorthands}")
            if len(shorthands) > 2 and shorthands[1] == "=":
                value, rest = shorthands[2:], ""
            elif spec.no_opt_default:
                value = spec.no_opt_default
            elif len(shorthands) > 1:
                value, rest = shorthands[1:], ""
            elif i < len(argv):
                value = argv[i]
                i += 1
            else:
                raise UsageError(f"flag needs an argument: {_quote_rune(letter)} in -{shorthands}")
            values.set(spec, value)
            shorthands = rest
    return values, positional


def _default_config_path(env: Mapping[str, str]) -> str:
    """Upstream's default config file: ``<user config dir>/hubble/config.yaml``."""
    xdg = env.get("XDG_CONFIG_HOME", "")
    home = env.get("HOME", "")
    if xdg and os.path.isabs(xdg):
        return str(Path(xdg) / "hubble" / "config.yaml")
    if not xdg and home:
        return str(Path(home) / ".config" / "hubble" / "config.yaml")
    if home:
        return str(Path(home) / ".hubble" / "config.yaml")
    return ""


def _load_config_file(path: str) -> dict | None:
    """Read the config file like viper: a missing or unreadable file is silently ignored."""
    if not path:
        return None
    suffix = Path(path).suffix.lower()
    if suffix not in ("", ".yaml", ".yml", ".json"):
        return None
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    import yaml  # lazy: only when a config file exists (start-up time)

    try:
        loaded = yaml.safe_load(data)
    except (yaml.YAMLError, UnicodeDecodeError):
        return None
    if loaded is None:
        loaded = {}
    if not isinstance(loaded, dict):
        return None
    return {str(key).lower(): value for key, value in loaded.items()}


class _Settings:
    """Upstream's viper lookup order: changed flag, then HUBBLE_* variable, then config file, then default."""

    def __init__(self, flags: _FlagValues, env: Mapping[str, str], config: dict | None) -> None:
        self.flags = flags
        self.env = env
        self.config = config or {}

    def raw(self, key: str) -> object:
        if key in self.flags.changed:
            return self.flags.values.get(key)
        env_value = self.env.get("HUBBLE_" + key.upper().replace("-", "_"), "")
        if env_value != "":
            return env_value
        if key in self.config:
            return self.config[key]
        return None

    def string(self, key: str, default: str) -> str:
        value = self.raw(key)
        if value is None:
            return default
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw(key)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float):
            return value != 0
        try:
            return _go_parse_bool(str(value))
        except ValueError:
            return False

    def string_list(self, key: str) -> list[str]:
        value = self.raw(key)
        if value is None:
            return []
        if isinstance(value, list):
            return ["" if item is None else str(item) for item in value]
        return str(value).split()

    def duration_ns(self, key: str, default: int) -> int:
        value = self.raw(key)
        if value is None:
            return default
        if isinstance(value, int):
            return value
        text = str(value)
        try:
            if any(ch.isalpha() for ch in text):
                return parse_go_duration(text)
            return parse_go_duration(text + "ns")
        except DurationError:
            return 0

    def integer(self, key: str, default: int) -> int:
        value = self.raw(key)
        if value is None:
            return default
        if isinstance(value, int):
            return value
        try:
            return go_parse_uint(str(value).strip(), 0, 64)
        except ValueError:
            return 0


def _validate_field_mask(paths: list[str]) -> None:
    for path in paths:
        from hubblepy.api.flow import flow_pb2  # lazy: start-up time

        descriptor = flow_pb2.Flow.DESCRIPTOR
        valid = True
        for name in path.split("."):
            if descriptor is None or name not in descriptor.fields_by_name:
                valid = False
                break
            field_descriptor = descriptor.fields_by_name[name]
            descriptor = field_descriptor.message_type if not field_descriptor.is_repeated else None
        if not valid:
            raise UsageError(
                f'failed to construct field mask: proto: invalid path {go_quote(path)} for message "flow.Flow"'
            )


_MIN_TIMESTAMP_SECONDS = -62135596800  # 0001-01-01T00:00:00Z
_MAX_TIMESTAMP_SECONDS = 253402300799  # 9999-12-31T23:59:59Z


def _check_timestamp_range(name: str, ns: int) -> None:
    """Upstream's ``timestamppb.CheckValid`` on the parsed bound."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    text = f"seconds:{seconds}" + (f" nanos:{nanos}" if nanos else "")
    if seconds < _MIN_TIMESTAMP_SECONDS:
        raise UsageError(
            f"failed to convert `{name}` timestamp to proto: proto: timestamp ({text}) before 0001-01-01"
        )
    if seconds > _MAX_TIMESTAMP_SECONDS:
        raise UsageError(
            f"failed to convert `{name}` timestamp to proto: proto: timestamp ({text}) after 9999-12-31"
        )


def _compat_legacy_json(env: Mapping[str, str]) -> bool:
    return any(part.lower() == "legacy-json-output" for part in env.get("HUBBLE_COMPAT", "").split(","))


def parse_observe_args(
    argv: list[str],
    env: Mapping[str, str],
    now: datetime | int | None = None,
) -> ObserveArgs:
    """Parse the arguments that follow ``hubble observe`` (a leading ``flows`` word is ignored).

    ``env`` supplies ``HUBBLE_*``, ``XDG_CONFIG_HOME`` and ``HOME``; ``now`` anchors relative
    ``--since``/``--until`` values (default: the current time). Raises :class:`UsageError` with
    upstream's message, or :class:`HelpRequested`.
    """
    flags, positional = _parse_flags(list(argv))
    values = flags.values
    if values.get("help"):
        raise HelpRequested()

    args = ObserveArgs(changed=set(flags.changed), positional=positional)

    # Configuration file and environment (cobra.OnInitialize).
    config_path = env.get("HUBBLE_CONFIG", "") if "config" not in flags.changed else str(values["config"])
    if "config" not in flags.changed and not config_path:
        config_path = _default_config_path(env)
    config = _load_config_file(config_path)
    args.config = config_path
    args.config_file_used = config_path if config is not None else None
    settings = _Settings(flags, env, config)

    args.debug = settings.boolean("debug", False)
    args.server = settings.string("server", DEFAULT_SERVER)
    args.timeout_ns = settings.duration_ns("timeout", DEFAULT_DIAL_TIMEOUT_NS)
    args.request_timeout_ns = settings.duration_ns("request-timeout", DEFAULT_REQUEST_TIMEOUT_NS)
    args.tls = settings.boolean("tls", False)
    args.tls_allow_insecure = settings.boolean("tls-allow-insecure", False)
    args.tls_ca_cert_files = settings.string_list("tls-ca-cert-files")
    args.tls_client_cert_file = settings.string("tls-client-cert-file", "")
    args.tls_client_key_file = settings.string("tls-client-key-file", "")
    args.tls_server_name = settings.string("tls-server-name", "")
    args.basic_auth_username = settings.string("basic-auth-username", "")
    args.basic_auth_password = settings.string("basic-auth-password", "")
    args.port_forward = settings.boolean("port-forward", False)
    args.port_forward_port = settings.integer("port-forward-port", 4245)
    args.kube_context = settings.string("kube-context", "")
    args.kube_namespace = settings.string("kube-namespace", "kube-system")
    args.kubeconfig = settings.string("kubeconfig", "")

    # Flag validation (PersistentPreRunE; upstream registers the basic-auth check first).
    if bool(args.basic_auth_username) != bool(args.basic_auth_password):
        raise UsageError("invalid flag(s): must specify both basic-auth-username and basic-auth-password")
    if args.tls_client_key_file or args.tls_client_cert_file:
        if not (args.tls_client_key_file and args.tls_client_cert_file):
            raise UsageError(
                "invalid flag(s): certificate and private key are both required, but only one was provided"
            )
        if not (args.tls or args.server.startswith(TLS_PREFIX)):
            raise UsageError("invalid flag(s): transport layer security required")

    # Plain options.
    args.time_format = str(values.get("time-format", "StampMilli"))
    args.color = str(values.get("color", "auto"))
    args.print_node_name = bool(values.get("print-node-name", False))
    args.print_policy_names = bool(values.get("print-policy-names", False))
    args.numeric = bool(values.get("numeric", False))
    args.ip_translation = bool(values.get("ip-translation", True)) and not args.numeric
    input_file = values.get("input-file", "")
    args.input_file = str(input_file) if input_file else None
    args.silent_errors = bool(values.get("silent-errors", False))
    args.print_raw_filters = bool(values.get("print-raw-filters", False))
    args.use_default_field_masks = bool(values.get("use-default-field-masks", True))
    args.field_mask = list(values.get("field-mask", []))
    args.jq = str(values["jq"]) if "jq" in values else None
    args.strict_last = bool(values.get("strict-last", False))
    args.first = int(values.get("first", 0))
    args.last = int(values.get("last", 0))
    args.all = bool(values.get("all", False))
    args.follow = bool(values.get("follow", False))
    args.since = str(values["since"]) if values.get("since") else None
    args.until = str(values["until"]) if values.get("until") else None

    # handleFlowArgs.
    if flags.filters.trailing_not:
        raise UsageError("trailing --not found in the arguments")
    output = str(values.get("output", "compact"))
    args.output_flag = output
    if output in ("compact", "dict"):
        args.output = output
    elif output in ("json", "JSON", "jsonpb"):
        args.output = "json"
        args.jsonpb = output == "jsonpb"
        args.legacy_json = not args.jsonpb and _compat_legacy_json(env)
    elif output in ("tab", "table"):
        if args.follow:
            raise UsageError("table output format is not compatible with follow mode")
        args.output = "table"
    else:
        raise UsageError(f"invalid output format: {output}")
    if args.output != "json" and args.field_mask:
        raise UsageError(f"{output} output format is not compatible with custom field mask")

    # getFlowsRequest.
    first = args.first > 0
    last = args.last > 0
    if first and last:
        raise UsageError("cannot set both --first and --last")
    if first and args.all:
        raise UsageError("cannot set both --first and --all")
    if first and args.follow:
        raise UsageError("cannot set both --first and --follow")
    if last and args.all:
        raise UsageError("cannot set both --last and --all")
    if now is None:
        now = datetime.now(UTC)
    if args.since is not None:
        try:
            args.since_ns = parse_time_bound(args.since, now)
        except TimeParseError as exc:
            raise UsageError(f"failed to parse the since time: {exc}") from None
        _check_timestamp_range("since", args.since_ns)
    if args.until is not None and not args.follow:
        try:
            args.until_ns = parse_time_bound(args.until, now)
        except TimeParseError as exc:
            raise UsageError(f"failed to parse the until time: {exc}") from None
        _check_timestamp_range("until", args.until_ns)
    number = args.last
    if args.since_ns is None and args.until_ns is None and not first:
        if args.all:
            number = ALL_FLOWS
        elif number == 0 and not args.follow and args.input_file is None:
            number = DEFAULT_LAST_LIVE
    if first:
        number = args.first
    args.number = number
    args.first_mode = first

    args.allow = flags.filters.allow_filters()
    args.deny = flags.filters.deny_filters()
    for key, target in (("allowlist", args.allow), ("denylist", args.deny)):
        raws = settings.string_list(key)
        if not raws:
            continue
        from hubblepy.cli.raw_filters import RawFilterError, decode_flow_filters  # lazy: start-up time

        for raw in raws:
            try:
                target.extend(decode_flow_filters(raw))
            except RawFilterError as exc:
                raise UsageError(f"invalid --{key} flag: {exc}") from None
    if args.field_mask:
        _validate_field_mask(args.field_mask)
    return args
