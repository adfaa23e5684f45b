"""`hubble status`: the text forms of a ServerStatusResponse, as upstream's printer writes them.

The command itself (health check, then ServerStatus) lives in :mod:`hubblepy.cli.live`; this module
turns the response into the ``compact`` (default), ``dict`` and ``table`` outputs:

* counts are grouped by thousands with commas (``8,190``), as upstream's ``uint64Grouping``;
* ``Flows/s`` is the server's ``flows_rate`` (each node measures it over the last minute or the
  span its ring covers, whichever is shorter; a relay adds its nodes' rates) printed with two
  decimals; only when the server sends no rate does the compact form fall back to
  ``seen_flows / uptime``, and the other forms print ``N/A``;
* the uptime is Go's ``time.Duration`` text (``1h2m3.5s``);
* hubblepy nodes also send what they lost, in a ``hubblepy-lost-events`` trailer of the call
  (upstream servers never do, upstream clients ignore it): the compact form then ends with
  ``Lost Events (perf buffer)``, ``Ring Overwritten`` and ``Lost Events (slow readers)`` lines,
  each only when non-zero.
"""

from __future__ import annotations

from typing import Any

OUTPUTS = ("compact", "dict", "json", "JSON", "jsonpb", "tab", "table")


def main(argv: list[str]) -> int:
    """Run `hubble status` with ``argv``; returns the exit status."""
    from hubblepy.cli.live import status_main

    return status_main(argv)


def group_thousands(n: int) -> str:
    """``8190`` -> ``8,190`` (Go hubble's uint64Grouping)."""
    return f"{n:,}"


def _trim_fraction(text: str) -> str:
    return text.rstrip("0").rstrip(".") if "." in text else text


def go_duration_ns(ns: int) -> str:
    """Go's ``time.Duration(ns).String()``; values beyond int64 are printed as ``<n>ns``."""
    if ns > (1 << 63) - 1:
        return f"{ns}ns"
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    u = abs(ns)
    if u < 1_000_000_000:
        for unit, scale in (("ns", 1), ("µs", 1_000), ("ms", 1_000_000)):
            if u < scale * 1000:
                whole, frac = divmod(u, scale)
                digits = len(str(scale)) - 1
                text = f"{whole}.{frac:0{digits}d}" if digits else str(whole)
                return sign + _trim_fraction(text) + unit
    seconds, frac = divmod(u, 1_000_000_000)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    sec_text = _trim_fraction(f"{secs}.{frac:09d}") + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{sec_text}"
    if minutes:
        return f"{sign}{minutes}m{sec_text}"
    return sign + sec_text


def _rate(ss: Any) -> str:
    return f"{ss.flows_rate:.2f}" if ss.flows_rate > 0 else "N/A"


def _optional_count(ss: Any, field: str) -> str:
    return str(getattr(ss, field).value) if ss.HasField(field) else "N/A"


def format_compact(ss: Any, lost: dict[str, int] | None = None) -> str:
    """The default output (after the ``Healthcheck`` line)."""
    lines = []
    ratio = f" ({ss.num_flows / ss.max_flows * 100:.2f}%)" if ss.max_flows > 0 else ""
    lines.append(f"Current/Max Flows: {group_thousands(ss.num_flows)}/{group_thousands(ss.max_flows)}{ratio}")
    per_sec = _rate(ss)
    if per_sec == "N/A" and ss.uptime_ns > 0:
        per_sec = f"{ss.seen_flows / (ss.uptime_ns / 1e9):.2f}"
    lines.append(f"Flows/s: {per_sec}")
    if ss.HasField("num_connected_nodes"):
        total = ""
        if ss.HasField("num_unavailable_nodes"):
            total = f"/{ss.num_unavailable_nodes.value + ss.num_connected_nodes.value}"
        lines.append(f"Connected Nodes: {ss.num_connected_nodes.value}{total}")
    if ss.HasField("num_unavailable_nodes") and ss.num_unavailable_nodes.value > 0:
        names = sorted(ss.unavailable_nodes)
        count = ss.num_unavailable_nodes.value
        if names:
            if count > len(names):
                names.append(f"and {count - len(names)} more...")
            lines.append(f"Unavailable Nodes: {count}\n  - " + "\n  - ".join(names))
        else:
            lines.append(f"Unavailable Nodes: {count}")
    lines.extend(_lost_lines(lost or {}))
    return "".join(line + "\n" for line in lines)


def _lost_lines(lost: dict[str, int]) -> list[str]:
    """hubblepy's lost-event counts, when the server sends them (upstream servers never do)."""
    out = []
    for key, title in (
        ("lost_perf_events", "Lost Events (perf buffer)"),
        ("ring_overwritten", "Ring Overwritten"),
        ("ring_readers_lost", "Lost Events (slow readers)"),
    ):
        if lost.get(key):
            out.append(f"{title}: {group_thousands(lost[key])}")
    return out


def format_dict(ss: Any) -> str:
    """``-o dict``: one ``KEY: value`` line per field, keys right-aligned."""
    rows = [
        ("          NUM FLOWS: ", group_thousands(ss.num_flows)),
        ("          MAX FLOWS: ", group_thousands(ss.max_flows)),
        ("         SEEN FLOWS: ", group_thousands(ss.seen_flows)),
        ("   FLOWS PER SECOND: ", _rate(ss)),
        ("             UPTIME: ", go_duration_ns(ss.uptime_ns)),
        ("NUM CONNECTED NODES: ", _optional_count(ss, "num_connected_nodes")),
        (" NUM UNAVAIL. NODES: ", _optional_count(ss, "num_unavailable_nodes")),
        ("            VERSION: ", ss.version),
    ]
    return "".join(key + value + "\n" for key, value in rows)


def format_table(ss: Any) -> str:
    """``-o table``: a header row and a value row, aligned as Go's tabwriter does."""
    from hubblepy.cli.live import tabwrite

    header = [
        "NUM FLOWS", "MAX FLOWS", "SEEN FLOWS", "FLOWS PER SECOND", "UPTIME",
        "NUM CONNECTED NODES", "NUM UNAVAILABLE NODES", "VERSION",
    ]  # fmt: skip
    values = [
        group_thousands(ss.num_flows),
        group_thousands(ss.max_flows),
        group_thousands(ss.seen_flows),
        _rate(ss),
        go_duration_ns(ss.uptime_ns),
        _optional_count(ss, "num_connected_nodes"),
        _optional_count(ss, "num_unavailable_nodes"),
        ss.version,
    ]
    return tabwrite([header, values])


def format_status(ss: Any, output: str = "compact", lost: dict[str, int] | None = None) -> str:
    """The response in ``output`` (one of :data:`OUTPUTS` other than the JSON ones); ``lost``: a
    hubblepy node's lost-event counts (compact form only)."""
    if output == "dict":
        return format_dict(ss)
    if output in ("tab", "table"):
        return format_table(ss)
    return format_compact(ss, lost)
