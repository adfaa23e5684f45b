"""Command-line parsing for `hubble observe [flows]`, compatible with upstream's Go pflag/cobra.

Flags are read by the pflag port (:mod:`hubblepy.cli.pflag`) from the table of
:mod:`hubblepy.cli.observe_flags`, and settings (server, TLS, timeouts, allowlist/denylist, debug)
by the one settings layer (:mod:`hubblepy.cli.settings`). After parsing, the same checks as upstream
run in upstream's order (output format, field mask, ``--first``/``--last``/``--all``/``--follow``,
``--since``/``--until``, raw filters from flags, ``HUBBLE_ALLOWLIST``/``HUBBLE_DENYLIST`` and the
config file). The result is an :class:`ObserveArgs` holding canonical FlowFilter allow/deny lists and
every option the command needs. Filter *compilation* (IP, port, regex, label checks) is not done here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from hubblepy.cli.connection_flags import Connection
from hubblepy.cli.filter_flags import FILTER_FLAG_NAMES, FilterBuilder
from hubblepy.cli.observe_flags import observe_flag_specs
from hubblepy.cli.pflag import FlagSet, HelpRequested, UsageError
from hubblepy.cli.settings import OBSERVE_KEYS, Settings
from hubblepy.cli.timeparse import TimeParseError, go_quote, parse_time_bound

__all__ = [
    "HelpRequested",
    "ObserveArgs",
    "UsageError",
    "parse_observe_args",
    "render_raw_filters",
]

DEFAULT_LAST_LIVE = 20
ALL_FLOWS = (1 << 64) - 1
MAX_FILE_LAST = 1_000_000
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


#: The flags `hubble observe` accepts.
OBSERVE_FLAGS = FlagSet(observe_flag_specs(FILTER_FLAG_NAMES))
FLAGS_BY_NAME = OBSERVE_FLAGS.by_name
FLAGS_BY_SHORT = OBSERVE_FLAGS.by_short


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
    # connection (live mode): server, timeouts, TLS, basic auth, port-forward
    connection: Connection = field(default_factory=Connection)
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


def render_raw_filters(allow: list[dict], deny: list[dict]) -> str:
    """The ``--print-raw-filters`` YAML (the codec is loaded only when asked for)."""
    from hubblepy.cli import raw_filters

    return raw_filters.render_raw_filters(allow, deny)


def _validate_field_mask(paths: list[str]) -> None:
    from hubblepy.api.flow import flow_pb2

    for path in paths:
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
    filters = FilterBuilder()
    flags, positional = OBSERVE_FLAGS.parse(list(argv), filters)
    values = flags.values
    if values.get("help"):
        raise HelpRequested()

    args = ObserveArgs(changed=set(flags.changed), positional=positional)

    # Configuration file and environment (cobra.OnInitialize), then the settings (viper).
    settings = Settings(env, {k: values[k] for k in flags.changed if k in values}, keys=OBSERVE_KEYS)
    args.config = settings.path
    args.config_file_used = settings.file_used

    args.debug = settings.boolean("debug")
    # Connection settings, then flag validation (PersistentPreRunE; basic auth checked first).
    args.connection = Connection.from_settings(settings)

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
    if filters.trailing_not:
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

    args.allow = filters.allow_filters()
    args.deny = filters.deny_filters()
    for key, target in (("allowlist", args.allow), ("denylist", args.deny)):
        for raw in settings.string_list(key):
            from hubblepy.cli.raw_filters import RawFilterError, decode_flow_filters

            try:
                target.extend(decode_flow_filters(raw))
            except RawFilterError as exc:
                raise UsageError(f"invalid --{key} flag: {exc}") from None
    if args.field_mask:
        _validate_field_mask(args.field_mask)
    return args
