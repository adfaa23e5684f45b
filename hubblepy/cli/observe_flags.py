"""Every flag of `hubble observe`: upstream 1.19.4's, with its groups, plus hubblepy's own.

The table drives parsing (:mod:`hubblepy.cli.observe_args`), ``observe --help`` and completion.
Descriptions are ours; names, short forms, kinds and defaults are upstream's.
"""

from __future__ import annotations

from hubblepy.cli.connection_flags import GLOBAL_FLAGS, SERVER_FLAGS
from hubblepy.cli.pflag import FlagSpec, bool_flag

SELECTORS = "Selectors"
FILTERS = "Filters"
RAW = "Raw-Filters"
FORMATTING = "Formatting"
FLOW_FORMAT = "Flow Format"
OTHER = "Other"
HUBBLEPY = "hubblepy"

_TIME_LAYOUTS = (
    "a duration back from now (3s, 4m, 1h30m) or a time in one of these layouts:\n"
    "  StampMilli:             Jan _2 15:04:05.000\n"
    "  YearMonthDay:           2006-01-02\n"
    "  YearMonthDayHour:       2006-01-02T15-07:00\n"
    "  YearMonthDayHourMinute: 2006-01-02T15:04-07:00\n"
    "  RFC3339:                2006-01-02T15:04:05-07:00\n"
    "  RFC3339Milli:           2006-01-02T15:04:05.999-07:00\n"
    "  RFC3339Micro:           2006-01-02T15:04:05.999999-07:00\n"
    "  RFC3339Nano:            2006-01-02T15:04:05.999999999-07:00\n"
    "  RFC1123Z:               Mon, 02 Jan 2006 15:04:05 -0700"
)

_TYPES = (
    "event type, TYPE or TYPE:SUBTYPE:\n"
    "  TYPE             SUBTYPE\n"
    "  capture          n/a\n"
    "  drop             n/a\n"
    "  l7               n/a\n"
    "  policy-verdict   n/a\n"
    "  trace            from-endpoint, from-host, from-network, from-overlay, from-proxy,\n"
    "                   from-stack, from-crypto, to-endpoint, to-host, to-network,\n"
    "                   to-overlay, to-proxy, to-stack, to-crypto\n"
    "  trace-sock       n/a"
)

_IP = "an address (10.0.0.1) or a CIDR range (10.0.0.0/24)"

#: filter flag -> (short, no-option default, description)
FILTER_HELP: dict[str, tuple[str, str, str]] = {
    "all-namespaces": ("A", "true", "flows of every Kubernetes namespace"),
    "cel-expression": ("", "", "flows for which this CEL expression is true"),
    "cluster": ("", "", 'flows of these clusters (patterns like "prod-*")'),
    "drop-reason-desc": ("", "", 'drops with this reason (e.g. "POLICY_DENIED")'),
    "encrypted": ("", "true", "only encrypted flows"),
    "fqdn": ("", "", 'flows from or to this FQDN pattern (e.g. "*.cilium.io")'),
    "from-all-namespaces": ("", "true", "flows from any Kubernetes namespace"),
    "from-cluster": ("", "", "flows from endpoints of this cluster"),
    "from-fqdn": ("", "", "flows from this FQDN pattern"),
    "from-identity": ("", "", "flows from endpoints with this security identity (number or reserved name)"),
    "from-ip": ("", "", f"flows from {_IP}"),
    "from-label": ("", "", 'flows from endpoints with these labels (e.g. "app=api", "reserved:world")'),
    "from-namespace": ("", "", "flows from this Kubernetes namespace"),
    "from-pod": ("", "", "flows from pods with this name prefix ([namespace/]pod; namespace default)"),
    "from-port": ("", "", "flows from this source port"),
    "from-service": ("", "", "flows from this service ([namespace/]service; namespace default)"),
    "from-workload": ("", "", "flows from endpoints of this workload ([kind/]name)"),
    "http-header": ("", "", 'HTTP flows with this header, NAME:VALUE (e.g. "foo:bar")'),
    "http-method": ("", "", 'HTTP flows with this method (e.g. "get")'),
    "http-path": ("", "", 'HTTP flows whose path matches this regular expression (e.g. "/page/\\\\d+")'),
    "http-status": ("", "", 'HTTP responses with this status code or prefix (e.g. "404", "5+")'),
    "http-url": ("", "", "HTTP flows whose URL matches this regular expression"),
    "identity": ("", "", "flows from or to endpoints with this security identity"),
    "interface": ("", "", "flows seen on this network interface (e.g. eth0)"),
    "ip": ("", "", f"flows from or to {_IP}"),
    "ip-trace-id": ("", "", "flows with this IP trace ID (greater than 0)"),
    "ip-version": ("", "", 'flows of this IP version: "v4", "v6" or "none" (non-IP, e.g. ARP)'),
    "ipv4": ("4", "v4", "only IPv4 flows"),
    "ipv6": ("6", "v6", "only IPv6 flows"),
    "label": ("l", "", "flows from or to endpoints with these labels"),
    "namespace": ("n", "", "flows from or to this Kubernetes namespace"),
    "node-label": ("", "", 'flows seen on nodes with these labels (e.g. "kubernetes.io/os=linux")'),
    "node-name": ("", "", 'flows seen on these nodes (patterns like "k8s*", "cluster/node-*")'),
    "not": ("", "true", "negate the next filter flag (e.g. --not --from-ip 10.0.0.1)"),
    "pod": ("", "", "flows from or to pods with this name prefix ([namespace/]pod)"),
    "port": ("", "", "flows from or to this port"),
    "protocol": ("", "", 'flows of this L4 or L7 protocol (e.g. "tcp", "udp", "dns", "http")'),
    "service": ("", "", "flows from or to this service ([namespace/]service)"),
    "snat-ip": ("", "", f"flows SNATed to {_IP}"),
    "tcp-flags": ("", "", 'TCP flows with these flags set (e.g. "syn", "syn,ack")'),
    "to-all-namespaces": ("", "true", "flows to any Kubernetes namespace"),
    "to-cluster": ("", "", "flows to endpoints of this cluster"),
    "to-fqdn": ("", "", "flows to this FQDN pattern"),
    "to-identity": ("", "", "flows to endpoints with this security identity"),
    "to-ip": ("", "", f"flows to {_IP}"),
    "to-label": ("", "", "flows to endpoints with these labels"),
    "to-namespace": ("", "", "flows to this Kubernetes namespace"),
    "to-pod": ("", "", "flows to pods with this name prefix ([namespace/]pod)"),
    "to-port": ("", "", "flows to this destination port"),
    "to-service": ("", "", "flows to this service ([namespace/]service)"),
    "to-workload": ("", "", "flows to endpoints of this workload"),
    "trace-id": ("", "", "flows with this trace ID"),
    "traffic-direction": ("", "", 'flows in this direction: "ingress" or "egress"'),
    "type": ("t", "", _TYPES),
    "unencrypted": ("", "true", "only unencrypted flows"),
    "uuid": ("", "", "the flow with this UUID"),
    "verdict": (
        "",
        "",
        "flows with this verdict: FORWARDED, DROPPED, AUDIT, REDIRECTED, ERROR, TRACED, TRANSLATED",
    ),
    "workload": ("", "", "flows from or to endpoints of this workload"),
}

OTHER_FLAGS = (
    bool_flag("all", help="every flow the server keeps (many: combine with filters)", group=SELECTORS),
    FlagSpec(
        "first",
        "uint64",
        help="the oldest N flows (through a relay: N per node)",
        group=SELECTORS,
    ),
    bool_flag("follow", "f", help="keep printing new flows as they come", group=SELECTORS),
    FlagSpec(
        "last",
        "uint64",
        help="the newest N flows (default 20 from a server; through a relay: N per node)",
        group=SELECTORS,
    ),
    FlagSpec("since", "string", help="flows from this time on: " + _TIME_LAYOUTS, group=SELECTORS),
    FlagSpec("until", "string", help="flows up to this time: " + _TIME_LAYOUTS, group=SELECTORS),
    FlagSpec(
        "allowlist", "string_array", help="a FlowFilter as JSON; flows matching one are shown", group=RAW
    ),
    FlagSpec(
        "denylist", "string_array", help="a FlowFilter as JSON; flows matching one are hidden", group=RAW
    ),
    FlagSpec(
        "output",
        "string",
        "o",
        help="output format:\n"
        "  compact:  one line per flow\n"
        "  dict:     one KEY: value line per field\n"
        "  jsonpb:   each GetFlowsResponse as proto3 JSON\n"
        "  json:     the same as jsonpb\n"
        "  table:    aligned columns",
        group=FORMATTING,
        default='"compact"',
    ),
    bool_flag("print-node-name", help="show the node that saw each flow", group=FORMATTING),
    bool_flag(
        "print-policy-names", help="show the policies that allowed or denied each flow", group=FORMATTING
    ),
    FlagSpec(
        "time-format",
        "string",
        help="how times are printed (not in JSON): StampMilli, YearMonthDay, YearMonthDayHour,\n"
        "YearMonthDayHourMinute, RFC3339, RFC3339Milli, RFC3339Micro, RFC3339Nano, RFC1123Z",
        group=FORMATTING,
        default='"StampMilli"',
    ),
    FlagSpec(
        "color",
        "string",
        help="colours in compact and dict output: auto (on a terminal), always or never",
        group=FLOW_FORMAT,
        default='"auto"',
    ),
    bool_flag(
        "ip-translation",
        help="show names (pod, FQDN...) instead of IP addresses",
        group=FLOW_FORMAT,
        default="true",
    ),
    bool_flag("numeric", help="show numbers only (IPs, ports, identities)", group=FLOW_FORMAT),
    FlagSpec(
        "field-mask",
        "string_slice",
        help="JSON output: ask the server only for these fields (comma-separated)",
        group=OTHER,
    ),
    bool_flag(
        "use-default-field-masks",
        help="compact, dict and table output: ask the server only for the fields they print",
        group=OTHER,
        default="true",
    ),
    FlagSpec(
        "input-file", "string", help="read flows from this file instead of a server ('-': stdin)", group=OTHER
    ),
    bool_flag("print-raw-filters", help="print the allowlist/denylist the flags make and exit", group=OTHER),
    bool_flag("silent-errors", "s", help="do not print errors and warnings about nodes", group=OTHER),
    FlagSpec(
        "jq",
        "string",
        help="run this jq program on each record's JSON and print its results (JSON output only)",
        group=HUBBLEPY,
    ),
    bool_flag(
        "strict-last",
        help="with --last N through a hubblepy relay: N flows in all, and how complete they are",
        group=HUBBLEPY,
    ),
)

OBSERVE_GROUPS = (
    SELECTORS,
    FILTERS,
    RAW,
    FORMATTING,
    FLOW_FORMAT,
    "Server Flags",
    OTHER,
    HUBBLEPY,
    "Global Flags",
)


def observe_flag_specs(filter_names: frozenset[str] | set[str]) -> list[FlagSpec]:
    """Every observe flag: the filter flags (``filter_names``), then the others."""
    specs = []
    for name in sorted(filter_names):
        short, no_opt, text = FILTER_HELP.get(name, ("", "", ""))
        specs.append(FlagSpec(name, "filter", short, no_opt, text, FILTERS))
    return [*specs, *OTHER_FLAGS, *SERVER_FLAGS, *GLOBAL_FLAGS]
