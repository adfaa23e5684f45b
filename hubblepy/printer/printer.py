"""The output side of `hubble observe`: compact, dict, table and JSON printers.

A `Printer` takes canonical `GetFlowsResponse` dicts one at a time:
- flows and lost-events records go to `out` (stdout);
- node-status records go to `err` (stderr), as upstream hubble prints them;
- records holding none of the three print nothing.

Text output is collected and written in large chunks. The terminal-safety escaping (see `escape`) runs
once per chunk (it cannot change across line boundaries), except for table output, where it must
run before the column widths are measured. Table output is held back until `close()` by the
tab writer, as upstream does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

import orjson

from .escape import escape_terminal, go_quote
from .flowtext import FlowText
from .jsonout import encode_canonical
from .tables import LOST_EVENT_SOURCE_NAMES, NODE_STATE_NAMES, enum_text
from .tabwriter import TabWriter
from .timefmt import STAMP_MILLI, make_timestamp_formatter, resolve_time_format

if TYPE_CHECKING:
    from hubblepy.codec.templates import Template

OUTPUT_FORMATS = ("compact", "dict", "table", "json")
DICT_SEPARATOR = "------------\n"
NODE_NAMES_CUTOFF = 50
_PRINTED_NODE_STATES = frozenset(("NODE_UNAVAILABLE", "NODE_ERROR"))
_RECORDS_PER_CHUNK = 256
_SENTINEL_PORT = 3987654320  # + hole index: a port no real flow has, found again in the text
_SLOW: tuple[int, str, tuple[tuple[int, int, int], ...]] = (-2, "", ())


@dataclass
class PrintOptions:
    """How `hubble observe` prints records. The CLI resolves flags into these values."""

    output: str = "compact"  # compact | dict | table | json
    time_format: str = "StampMilli"  # case-insensitive name; unknown names mean StampMilli
    color: bool = False  # already resolved from --color and the terminal
    print_node_name: bool = False
    print_policy_names: bool = False
    numeric: bool = False  # --numeric or --ip-translation=false
    debug: bool = False  # print every node-status state, not only errors
    silent_errors: bool = False  # drop node-status output
    # HUBBLE_COMPAT=legacy-json-output with `-o json` (never `-o jsonpb`): print the bare flow or lost
    # event instead of the whole GetFlowsResponse, and no node status.
    legacy_json: bool = False


def join_with_cutoff(names: list[str], separator: str = ", ", limit: int = NODE_NAMES_CUTOFF) -> str:
    """Join node names while the running byte length stays within `limit`, then `(and N more)`."""
    total = 0
    end = len(names)
    for index, name in enumerate(names):
        total += len(name.encode()) + len(separator.encode())
        if total > limit and index > 0:
            end = index
            break
    joined = separator.join(names[:end])
    omitted = len(names) - end
    if omitted:
        return f"{joined} (and {omitted} more)"
    return joined


def _unknown_node_status_text(status: dict) -> str:
    """Best-effort rendering of Go's `%+v` of an unknown NodeStatusEvent (prototext, one line)."""
    parts = []
    state = status.get("state_change")
    if state not in (None, 0, "UNKNOWN_NODE_STATE"):
        parts.append(f"state_change:{state}")
    parts.extend(f"node_names:{go_quote(name)}" for name in status.get("node_names", ()))
    if status.get("message"):
        parts.append(f"message:{go_quote(status['message'])}")
    return " ".join(parts)


class Printer:
    """Prints canonical GetFlowsResponse dicts in one output format; call `close()` at the end."""

    def __init__(self, opts: PrintOptions, out: BinaryIO, err: BinaryIO) -> None:
        if opts.output not in OUTPUT_FORMATS:
            raise ValueError(f"invalid output format: {opts.output}")
        self.opts = opts
        self._out = out
        self._err = err
        self._output = opts.output
        colour = opts.color and opts.output in ("compact", "dict")
        self._colour = colour
        self._text = FlowText(colour=colour, numeric=opts.numeric, policy_names=opts.print_policy_names)
        self._time = make_timestamp_formatter(opts.time_format)
        self._node_name = opts.print_node_name
        self._records = 0  # records printed so far, stdout and stderr together (dict separators)
        self._pending: list = []  # str pieces (text formats) or bytes (json) not yet written
        self._closed = False
        self._table: TabWriter | None = None
        self._table_header_done = False
        # Compact formats are kept on templates (shared by the printers of one run), under this key.
        self._format_key = (
            opts.output,
            opts.time_format,
            colour,
            opts.numeric,
            opts.print_policy_names,
            opts.print_node_name,
        )
        if opts.output == "table":
            self._table = TabWriter(self._pending.append)
        writers: dict[str, tuple[Callable, Callable]] = {
            "compact": (self._compact_flow, self._compact_lost),
            "dict": (self._dict_flow, self._dict_lost),
            "table": (self._table_flow, self._table_lost),
            "json": (self._json_stdout, self._json_stdout),
        }
        self._write_flow, self._write_lost = writers[opts.output]

    # ------------------------------------------------------------------ API
    def write(self, resp: dict, raw: bytes | None = None) -> None:
        """Print one record. `raw` (canonical JSON bytes of `resp`) is reused for JSON output."""
        flow = resp.get("flow")
        if flow is not None:
            self._write_flow(resp, flow, raw)
        elif "lost_events" in resp:
            self._write_lost(resp, resp["lost_events"], raw)
        elif "node_status" in resp:
            self._write_node_status(resp, resp["node_status"], raw)
        else:
            return
        if len(self._pending) >= _RECORDS_PER_CHUNK:
            self._drain()

    def write_record(
        self, resp: dict | None, raw: bytes | None, templated: tuple[Template, list[bytes]] | None
    ) -> None:
        """Print one record of a file as the reader yields it: ``(dict, canonical line or None, None)``,
        or ``(dict or None, line, (template, holes))`` for a line that matched a checked template."""
        if templated is not None and raw is not None:
            self.write_templated(raw, templated[0], templated[1], resp)
        elif resp is not None:
            self.write(resp, raw)

    def write_templated(self, raw: bytes, template: Template, holes: list[bytes], resp: dict | None) -> None:
        """Print one canonical line that matched a checked template (see :mod:`hubblepy.codec.templates`).

        JSON output writes the line itself; compact output fills a format made once per template
        (the rest of the line with the ports as ``%s``); anything else prints the line's dict
        (``resp``, or the line decoded).
        """
        if template.is_flow:
            if self._output == "json" and not self.opts.legacy_json:
                self._pending.append(raw + b"\n")
                self._records += 1
                if len(self._pending) >= _RECORDS_PER_CHUNK:
                    self._drain()
                return
            if self._output == "compact":
                found = template.formats.get(self._format_key)
                if found is None:
                    found = template.formats[self._format_key] = self._compact_format(raw, template)
                if found is not _SLOW:
                    time_slot, fmt, slots = found
                    stamp = self._time(holes[time_slot][1:-1].decode()) if time_slot >= 0 else ""
                    if slots:
                        values = tuple([holes[i][a : b or None].decode() for i, a, b in slots])
                        self._pending.append(stamp + fmt % values)
                    else:
                        self._pending.append(stamp + fmt)
                    self._records += 1
                    if len(self._pending) >= _RECORDS_PER_CHUNK:
                        self._drain()
                    return
        self.write(resp if resp is not None else orjson.loads(raw), raw)

    def compact_line_format(
        self, raw: bytes, template: Template, record: dict | None = None
    ) -> tuple[int, bytes, tuple[int, ...]] | None:
        """How to print a template's lines as bytes, with no other work per line, or None.

        Returns ``(time hole, format, holes)``: a line's compact text is ``format % (head, millis,
        *(its hole values at those indexes))`` where ``head`` is :meth:`compact_stamp_head` of its
        time and ``millis`` the first three digits of the time's fraction. Only for plain compact
        output (no colours: the terminal escaping of a line is then the escaping of each piece, and
        the hole values hold no ESC or CR) in the default time format; None when the template's
        lines must go through :meth:`write_templated`. ``raw`` is a line of the template and
        ``record`` its dict when the caller has it (changed for the work and restored).
        """
        if self._output != "compact" or self._colour or not template.is_flow:
            return None
        if resolve_time_format(self.opts.time_format) != STAMP_MILLI:
            return None
        found = template.formats.get(self._format_key)
        if found is None:
            found = template.formats[self._format_key] = self._compact_format(raw, template, record)
        time_slot, fmt, slots = found
        if time_slot < 0 or any(start or stop for _, start, stop in slots):
            return None
        text = "%s.%s" + escape_terminal(fmt, False)
        return time_slot, text.encode("utf-8", "surrogatepass"), tuple(hole for hole, _, _ in slots)

    def compact_stamp_head(self, token: bytes) -> bytes | None:
        """The compact time of a canonical timestamp token (with its quotes) before ``.millis``,
        or None when the printed time does not end with the token's milliseconds."""
        stamp = self._time(token[1:-1].decode("ascii", "replace"))
        millis = token[21:24] if len(token) > 22 else b"000"
        if stamp.encode().endswith(b"." + millis):
            return stamp[:-4].encode()
        return None

    def write_bytes(self, data: bytes, records: int) -> None:
        """Write ``records`` records' finished output (see :meth:`compact_line_format`) after what is pending."""
        self._drain()
        self._out.write(data)
        self._records += records

    def _compact_format(
        self, raw: bytes, template: Template, record: dict | None = None
    ) -> tuple[int, str, tuple[tuple[int, int, int], ...]]:
        """How compact prints the lines of a template: ``(time hole or -1, format, slots)``.

        The format is the rest of the line after the timestamp, with ``%s`` where a hole's value
        goes; each slot is ``(hole, start, stop)``, the slice of the hole's text to insert. The
        holes compact does not print must not change its text: that is checked by printing the
        flow with other values in them. ``record`` is the line's dict when the caller has it: it
        is changed for the work and restored.
        """
        from hubblepy.codec.templates import (
            DESTINATION_PORT,
            FLOW_TIME,
            HTTP_CODE,
            HTTP_METHOD,
            HTTP_URL,
            LATENCY,
            SOURCE_PORT,
            SUMMARY,
            UUID,
        )

        if record is None:
            record = orjson.loads(raw)
        flow = record["flow"]
        markers: dict[str, tuple[int, int, int]] = {}
        saved: list[tuple[dict, str, object]] = []

        def put(container: dict, name: str, value: object) -> None:
            saved.append((container, name, container[name]))
            container[name] = value

        try:
            for index, kind in enumerate(template.holes):
                if kind in (SOURCE_PORT, DESTINATION_PORT):
                    marker = str(_SENTINEL_PORT + index)
                    layer4 = flow["l4"]
                    name = "source_port" if kind == SOURCE_PORT else "destination_port"
                    put(layer4[next(iter(layer4))], name, int(marker))
                    markers[marker] = (index, 0, 0)
                elif kind == SUMMARY:
                    marker = f"~summary-{_SENTINEL_PORT}~"
                    put(flow, "Summary", marker)
                    markers[marker] = (index, 0, 0)
            rest = self._compact_rest(flow)
            if UUID in template.holes:
                put(flow, "uuid", "~other~")
            if LATENCY in template.holes:
                put(flow["l7"], "latency_ns", "1")
            for kind, name, value in (
                (HTTP_CODE, "code", 599),
                (HTTP_METHOD, "method", "~"),
                (HTTP_URL, "url", "~"),
            ):
                if kind in template.holes:
                    put(flow["l7"]["http"], name, value)
            if self._compact_rest(flow) != rest:
                return _SLOW
        finally:
            for container, name, value in reversed(saved):
                container[name] = value
        time_slot = template.holes.index(FLOW_TIME) if FLOW_TIME in template.holes else -1
        rest = rest.replace("%", "%%")
        if time_slot < 0:
            rest = self._time(flow.get("time")).replace("%", "%%") + rest
        found = sorted((rest.find(marker), marker) for marker in markers if marker in rest)
        if any(rest.count(marker) != 1 for _, marker in found):
            return _SLOW  # a hole's text also occurs elsewhere: print these lines in full
        slots = tuple(markers[marker] for _, marker in found)
        for _, marker in found:
            rest = rest.replace(marker, "%s")
        return time_slot, rest, slots

    def flush(self) -> None:
        """Write out everything pending except the held-back table (useful when following a stream)."""
        self._drain()
        self._out.flush()

    def close(self) -> None:
        """Write the table (if any) and everything pending. Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        if self._table is not None:
            self._table.flush()
        self._drain()
        self._out.flush()

    # ------------------------------------------------------------- plumbing
    def _drain(self) -> None:
        pending = self._pending
        if not pending:
            return
        if self._output == "json":
            data = b"".join(pending)
        else:
            text = "".join(pending)
            if self._table is None:
                text = escape_terminal(text, self._colour)
            data = text.encode("utf-8", "surrogatepass")
        pending.clear()
        self._out.write(data)

    def _write_stderr(self, data: bytes) -> None:
        # Keep the order of interleaved stdout and stderr output sane.
        self._drain()
        self._out.flush()
        self._err.write(data)
        self._err.flush()

    # -------------------------------------------------------------- compact
    def _compact_flow(self, resp: dict, flow: dict, raw: bytes | None) -> None:
        self._pending.append(self._time(flow.get("time")) + self._compact_rest(flow))
        self._records += 1

    def _compact_rest(self, flow: dict) -> str:
        """A flow's compact line after its timestamp."""
        text = self._text
        src, dst = text.hosts(flow)
        src_id = text.identity(flow.get("source"))
        dst_id = text.identity(flow.get("destination"))
        reply = flow.get("is_reply")
        if reply is None:
            arrow = "<>"
        elif reply:
            arrow = "<-"
            src, dst = dst, src
            src_id, dst_id = dst_id, src_id
        else:
            arrow = "->"
        node = f" [{flow.get('node_name', '')}]" if self._node_name else ""
        return (
            f"{node}: {src} {src_id} {arrow} {dst} {dst_id} "
            f"{text.flow_type(flow)} {text.verdict(flow)} ({text.summary(flow)})\n"
        )

    def _lost_summary_tail(self, lost: dict) -> str:
        first = lost.get("first")
        last = lost.get("last")
        if first is not None and last is not None:
            return f" (first: {self._time(first)}, last: {self._time(last)})"
        return ""

    @staticmethod
    def _lost_fields(lost: dict) -> tuple[str, int, int]:
        source = enum_text(LOST_EVENT_SOURCE_NAMES, lost.get("source"), "UNKNOWN_LOST_EVENT_SOURCE")
        return source, lost.get("cpu", 0), int(lost.get("num_events_lost", 0))

    def _compact_lost(self, resp: dict, lost: dict, raw: bytes | None) -> None:
        source, cpu, count = self._lost_fields(lost)
        self._pending.append(
            f"{self._time(resp.get('time'))} EVENTS LOST: {source} CPU({cpu}) {count}"
            f"{self._lost_summary_tail(lost)}\n"
        )
        self._records += 1

    # ----------------------------------------------------------------- dict
    def _dict_flow(self, resp: dict, flow: dict, raw: bytes | None) -> None:
        text = self._text
        src, dst = text.hosts(flow)
        separator = DICT_SEPARATOR if self._records else ""
        node = f"       NODE: {flow.get('node_name', '')}\n" if self._node_name else ""
        self._pending.append(
            f"{separator}  TIMESTAMP: {self._time(flow.get('time'))}\n{node}"
            f"     SOURCE: {src}\nDESTINATION: {dst}\n"
            f"       TYPE: {text.flow_type(flow)}\n"
            f"    VERDICT: {text.verdict(flow)}\n"
            f"    SUMMARY: {text.summary(flow)}\n"
        )
        self._records += 1

    def _dict_lost(self, resp: dict, lost: dict, raw: bytes | None) -> None:
        source, cpu, count = self._lost_fields(lost)
        separator = DICT_SEPARATOR if self._records else ""
        node = f"       NODE: {resp.get('node_name') or '-'}\n" if self._node_name else ""
        self._pending.append(
            f"{separator}  TIMESTAMP: {self._time(resp.get('time'))}\n{node}"
            f"     SOURCE: {source}\n"
            f"       TYPE: EVENTS LOST\n"
            f"    VERDICT: -\n"
            f"    SUMMARY: CPU({cpu}) - {count}{self._lost_summary_tail(lost)}\n"
        )
        self._records += 1

    # ---------------------------------------------------------------- table
    def _table_row(self, row: str) -> None:
        table = self._table
        assert table is not None
        if not self._table_header_done:
            self._table_header_done = True
            node = "NODE\t" if self._node_name else ""
            table.write(f"TIMESTAMP\t{node}SOURCE\tDESTINATION\tTYPE\tVERDICT\tSUMMARY\n")
        table.write(escape_terminal(row, False))
        self._records += 1

    def _table_flow(self, resp: dict, flow: dict, raw: bytes | None) -> None:
        text = self._text
        src, dst = text.hosts(flow)
        node = f"{flow.get('node_name', '')}\t" if self._node_name else ""
        self._table_row(
            f"{self._time(flow.get('time'))}\t{node}{src}\t{dst}\t{text.flow_type(flow)}\t"
            f"{text.verdict(flow)}\t{text.summary(flow)}\n"
        )

    def _table_lost(self, resp: dict, lost: dict, raw: bytes | None) -> None:
        source, cpu, count = self._lost_fields(lost)
        node = f"{resp.get('node_name') or '-'}\t" if self._node_name else ""
        self._table_row(
            f"{self._time(resp.get('time'))}\t{node}{source}\t-\tEVENTS LOST\t-\t"
            f"CPU({cpu}) - {count}{self._lost_summary_tail(lost)}\n"
        )

    # ----------------------------------------------------------------- json
    def _json_bytes(self, resp: dict, raw: bytes | None) -> bytes:
        if self.opts.legacy_json:
            # Legacy mode prints the inner object (flow or lost event) without the wrapper.
            inner = resp.get("flow")
            if inner is None:
                inner = resp.get("lost_events")
            return encode_canonical(inner) + b"\n"
        if raw is not None:
            return raw + b"\n"
        return encode_canonical(resp) + b"\n"

    def _json_stdout(self, resp: dict, record: dict, raw: bytes | None) -> None:
        self._pending.append(self._json_bytes(resp, raw))
        self._records += 1

    # ---------------------------------------------------------- node status
    def _write_node_status(self, resp: dict, status: dict, raw: bytes | None) -> None:
        if self.opts.silent_errors:
            return
        state = enum_text(NODE_STATE_NAMES, status.get("state_change"), "UNKNOWN_NODE_STATE")
        if not self.opts.debug and state not in _PRINTED_NODE_STATES:
            return
        if self._output == "json":
            if self.opts.legacy_json:
                return  # upstream's legacy JSON mode has no node-status output at all
            data = raw + b"\n" if raw is not None else encode_canonical(resp) + b"\n"
            self._write_stderr(data)
            return
        names = status.get("node_names", [])
        joined = join_with_cutoff(names)
        message = status.get("message", "")
        timestamp = self._time(resp.get("time"))
        if self._output == "dict":
            separator = DICT_SEPARATOR if self._records else ""
            text = (
                f"{separator}  TIMESTAMP: {timestamp}\n"
                f"      STATE: {state}\n"
                f"      NODES: {joined}\n"
                f"    MESSAGE: {go_quote(message) if message else 'N/A'}\n"
            )
            self._records += 1
        else:
            prefix = f"{timestamp} [{resp.get('node_name', '')}]"
            count = len(names)
            if state == "NODE_CONNECTED":
                text = f"{prefix}: Receiving flows from {count} nodes: {joined}\n"
            elif state == "NODE_UNAVAILABLE":
                text = f"{prefix}: {count} nodes are unavailable: {joined}\n"
            elif state == "NODE_GONE":
                text = f"{prefix}: {count} nodes removed from cluster: {joined}\n"
            elif state == "NODE_ERROR":
                text = f"{prefix}: Error {go_quote(message)} on {count} nodes: {joined}\n"
            else:
                text = f"{prefix}: unknown node status event: {_unknown_node_status_text(status)}\n"
        self._write_stderr(escape_terminal(text, self._colour).encode("utf-8", "surrogatepass"))
