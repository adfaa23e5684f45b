"""Line templates: proving a JSON line canonical from a validated neighbour, without parsing it.

Lines of a realistic flows file differ from earlier lines mostly in a few *holes*: the flow's
time, its UUID, the L4 ports, an L7 record's latency and an HTTP record's code, method and URL,
the summary, and the response's time. A line is cut at its holes (found with a few byte
searches); the text between them is the line's *template key*. The texts and the hole values
put together again are always the line itself. When a line with the
same key has been decoded and found canonical, and the template was checked (below), the new
line is canonical too provided each of its holes is a canonical value of its field, which a
small pattern per hole checks. So for such a line:

- upstream decodes it without a warning (it is valid protobuf JSON without unknown fields);
- ``orjson.loads`` of it is exactly the dict the decoder would return, and the line is its own
  JSON output.

Why that holds: a template is made from a line the decoder proved canonical, only after setting
its hole fields (found by path in the decoded dict) to sentinel values that the line does not
contain, encoding the dict again, and getting exactly ``text0 + sentinel1 + text1 + ...``. That
proves the holes are exactly those fields' value tokens. Canonical JSON is the field-by-field
encoding of the dict, so another line made of the same texts around canonical hole values is
the canonical encoding of the same dict with those field values, and each field's canonical
check is local to its value. (The summary's hole is the string's text without its quotes; the
quotes are in the texts around it.)

The hole search is a heuristic: a line it cuts wrongly just misses the cache (or makes a template
that never checks out) and is decoded the usual way.
"""

from __future__ import annotations

import re

import orjson

from .canonical import TIMESTAMP_RE

# Canonical values of the hole fields, checked with byte methods (a regular expression call costs
# more than all of these). Strings hold printable ASCII only, without the characters canonical
# JSON escapes, so that their text is their value.
_STRING_BYTES = bytes(c for c in range(0x20, 0x7F) if c not in b'"\\<>&')
_FRACTION_DIGITS = (0, 4, 7, 10)  # "" or "." and 3, 6 or 9 digits
_seconds_seen: set[bytes] = set()  # "YYYY-MM-DDTHH:MM:SS" texts proven valid (lines share seconds)
_is_timestamp = TIMESTAMP_RE.fullmatch


def _timestamp_ok(token: bytes) -> bool:
    """Whether ``token`` is a canonical JSON timestamp: ``"YYYY-MM-DDTHH:MM:SS[.fff[fff[fff]]]Z"``."""
    if token[-2:] != b'Z"':
        return False
    seconds = token[1:20]
    fraction = token[20:-2]
    if fraction:
        if len(fraction) not in _FRACTION_DIGITS or fraction[:1] != b"." or not fraction[1:].isdigit():
            return False
        if fraction.endswith(b"000"):  # canonical fractions drop whole zero groups
            return False
    if seconds in _seconds_seen:
        return True
    if _is_timestamp(seconds.decode("ascii", "replace") + "Z") is None:
        return False
    if len(_seconds_seen) >= 4096:
        _seconds_seen.clear()
    _seconds_seen.add(seconds)
    return True


def _string_ok(token: bytes) -> bool:
    """Whether ``token`` (found between two quotes) is a non-empty string without escapes."""
    return len(token) > 2 and not token[1:-1].translate(None, _STRING_BYTES)


def _port_end(line: bytes, at: int) -> int:
    """Where the port number starting at ``at`` ends (the next ``,`` or ``}``), or -1."""
    comma = line.find(b",", at)
    brace = line.find(b"}", at)
    if comma < 0:
        return brace
    return comma if brace < 0 or comma < brace else brace


def _port_ok(token: bytes) -> bool:
    """A non-zero uint32 of at most 9 digits (longer ones are left to the decoder)."""
    return 0 < len(token) <= 9 and token.isdigit() and token[0] != 48


# Hole kinds, in the order their fields come in a line (a template lists its holes by kind).
FLOW_TIME, UUID, SOURCE_PORT, DESTINATION_PORT, LATENCY, HTTP_CODE, HTTP_METHOD, HTTP_URL, SUMMARY, TIME = (
    range(10)
)
HOLE_NAMES = (
    "flow_time",
    "uuid",
    "source_port",
    "destination_port",
    "latency_ns",
    "http.code",
    "http.method",
    "http.url",
    "Summary",
    "time",
)

_FLOW_TIME_PREFIX = b'{"flow":{"time":"'
_UUID_KEY = b',"uuid":"'
_SOURCE_PORT_KEY = b'"source_port":'
_DESTINATION_PORT_KEY = b'"destination_port":'
_TIME_KEY = b',"time":"'
_L7_KEY = b'"l7":{"type":"'
_LATENCY_KEY = b',"latency_ns":"'
_HTTP_KEY = b',"http":{'
_CODE_KEY = b'"code":'
_METHOD_KEY = b'"method":"'
_URL_KEY = b'"url":"'
_SUMMARY_KEY = b',"Summary":"'
_L4_PROTOCOLS = (b'"l4":{"TCP":{', b'"l4":{"UDP":{', b'"l4":{"SCTP":{')

# The usual L3/L4 shape of cut(): both ports, right after the protocol's opening brace.
_PORTS_RE = re.compile(
    rb'"l4":\{"(?:TCP|UDP|SCTP)":\{"source_port":([1-9][0-9]{0,8}),"destination_port":([1-9][0-9]{0,8})[,}]'
)
_PORTS_SUMMARY_KINDS = (
    1 << FLOW_TIME | 1 << UUID | 1 << SOURCE_PORT | 1 << DESTINATION_PORT | 1 << SUMMARY | 1 << TIME
)
_FLOW_TIME_TEXT = _FLOW_TIME_PREFIX[:-1]
_UUID_TEXT = _UUID_KEY[:-1]
_DESTINATION_PORT_TEXT = b"," + _DESTINATION_PORT_KEY

MAX_TEMPLATES = 16384  # about 25 MB of texts at most; the cache starts again when full
_SENTINELS = {
    FLOW_TIME: "1971-02-03T04:05:06.789012345Z",
    UUID: "~template-hole~",
    SOURCE_PORT: 987654321,
    DESTINATION_PORT: 987654322,
    LATENCY: "987654321987",
    HTTP_CODE: 987654323,
    HTTP_METHOD: "~method-hole~",
    HTTP_URL: "~url-hole~",
    SUMMARY: "~summary-hole~",
    TIME: "1972-03-04T05:06:07.891234567Z",
}


class Template:
    """The texts around the holes of a checked line, and which holes it has."""

    __slots__ = ("formats", "holes", "is_flow", "texts")

    def __init__(self, texts: tuple[bytes, ...], holes: tuple[int, ...]) -> None:
        self.texts = texts
        self.holes = holes
        self.is_flow = texts[0].startswith(b'{"flow":')
        self.formats: dict = {}  # printers' own per-template data, keyed by their options


def cut(line: bytes) -> tuple[tuple, list[bytes]] | None:
    """``(key, hole values)`` of a line, or None when it has no holes or one is not canonical.

    The key is a bit set of the hole kinds followed by the texts around the holes. This runs for
    every line, so the most common shape of an L3/L4 flow (a 9-digit time and a 36-character UUID
    at fixed places, both ports of a TCP, UDP or SCTP record, no L7 record, a plain summary and the
    flow's time again at the end) is cut here with few interpreter steps: one expression matches
    both ports, the texts that are always the same are shared constants (their hashes are kept),
    and the result is the one :func:`_cut_general` gives (tests compare them). Any other line,
    or a line where anything differs, is cut by :func:`_cut_general`.
    """
    if (
        line[46:57] == b'Z","uuid":"'
        and line[93:95] == b'",'
        and line[17:36] in _seconds_seen
        and line[36] == 46  # "."
        and line[37:46].isdigit()
        and line[43:46] != b"000"
        and line.startswith(_FLOW_TIME_PREFIX)
        and not line[57:93].translate(None, _STRING_BYTES)
    ):
        at = line.find(b'"l4":{"', 94)
        ports = _PORTS_RE.match(line, at) if at > 0 else None
        if ports is not None:
            _, (source_at, source_end), (destination_at, destination_end) = ports.regs
            at = line.find(_SUMMARY_KEY, destination_end) + 12
            end = line.find(b'"', at)
            summary = line[at:end]
            tail = len(line) - 41
            flow_time = line[16:48]
            if (
                at > 11
                and end > at
                and tail >= end
                and not summary.translate(None, _STRING_BYTES)
                and line.find(_L7_KEY, destination_end) < 0
                and line[tail:] == b',"time":' + flow_time + b"}"
            ):
                return (
                    _PORTS_SUMMARY_KINDS,
                    _FLOW_TIME_TEXT,
                    _UUID_TEXT,
                    line[94:source_at],
                    _DESTINATION_PORT_TEXT,
                    line[destination_end:at],
                    line[end : tail + 8],
                    b"}",
                ), [
                    flow_time,
                    line[56:94],
                    line[source_at:source_end],
                    line[destination_at:destination_end],
                    summary,
                    flow_time,
                ]
    return _cut_general(line)


def _cut_general(line: bytes) -> tuple[tuple, list[bytes]] | None:
    """:func:`cut` of any line. Written for few interpreter steps rather than for elegance:
    helpers are inlined for the common shapes (a 9-digit fraction, a port followed by a comma).
    """
    find = line.find
    starts = line.startswith
    if not starts(_FLOW_TIME_PREFIX):
        return _cut_other(line)
    if (
        line[46:57] == b'Z","uuid":"'
        and line[93:95] == b'",'
        and line[36] == 46  # "."
        and line[37:46].isdigit()
        and line[43:46] != b"000"
        and line[17:36] in _seconds_seen
        and not line[57:93].translate(None, _STRING_BYTES)
    ):
        # The usual shape: a 9-digit fraction and a 36-character UUID, at fixed places.
        flow_time = line[16:48]
        texts: list[bytes] = [line[:16], line[48:56]]
        values: list[bytes] = [flow_time, line[56:94]]
        text = texts.append
        hole = values.append
        kinds = 1 << FLOW_TIME | 1 << UUID
        start = pos = 94
    else:
        pos = find(b'"', 17) + 1
        flow_time = line[16:pos]
        if (
            not (
                pos == 48
                and flow_time[20] == 46  # "."
                and flow_time[30:] == b'Z"'
                and flow_time[21:30].isdigit()
                and flow_time[27:30] != b"000"
                and flow_time[1:20] in _seconds_seen
            )
            and (not pos or not _timestamp_ok(flow_time))
        ):
            return None
        texts = [line[:16]]
        values = [flow_time]
        text = texts.append
        hole = values.append
        kinds = 1 << FLOW_TIME
        start = pos
        if starts(_UUID_KEY, pos):
            end = find(b'"', pos + 9) + 1
            value = line[pos + 8 : end]
            if not end or value[1:-1].translate(None, _STRING_BYTES) or len(value) < 3:
                return None
            text(line[start : pos + 8])
            hole(value)
            kinds |= 1 << UUID
            start = pos = end
    found = find(b'"l4":{"', pos)
    if found >= 0 and starts(_L4_PROTOCOLS, found):
        pos = find(b"{", found + 6) + 1
        if starts(_SOURCE_PORT_KEY, pos):
            at = pos + 14
            end = find(b",", at)
            value = line[at:end]
            if end < 0 or not value.isdigit():
                end = find(b"}", at)
                value = line[at:end]
                if end < 0 or not value.isdigit():
                    return None
            if len(value) > 9 or value[0] == 48:
                return None
            text(line[start:at])
            hole(value)
            kinds |= 1 << SOURCE_PORT
            start = end
            pos = end + 1  # after the comma
        if starts(_DESTINATION_PORT_KEY, pos):
            at = pos + 19
            end = find(b",", at)
            value = line[at:end]
            if end < 0 or not value.isdigit():
                end = find(b"}", at)
                value = line[at:end]
                if end < 0 or not value.isdigit():
                    return None
            if len(value) > 9 or value[0] == 48:
                return None
            text(line[start:at])
            hole(value)
            kinds |= 1 << DESTINATION_PORT
            start = pos = end
    # Optional holes: a value that is not plain stays in the text around the holes.
    at = find(_L7_KEY, pos)
    if at >= 0:
        # The L7 record: its latency, and an HTTP record's code, method and URL (a response's
        # code, latency and URL vary from line to line of the same conversation).
        typed = find(b'"', at + 14) + 1  # after the type's value
        if typed:
            pos = typed
        if typed and starts(_LATENCY_KEY, pos):
            at = pos + 14
            end = find(b'"', at + 1) + 1
            value = line[at:end]
            if end and 2 < len(value) <= 21 and value[1:-1].isdigit() and value[1] != 48:
                text(line[start:at])
                hole(value)
                kinds |= 1 << LATENCY
                start = pos = end
        if typed and starts(_HTTP_KEY, pos):
            pos += 9
            if starts(_CODE_KEY, pos):
                at = pos + 7
                end = find(b",", at)
                value = line[at:end]
                if end > at and len(value) <= 9 and value.isdigit() and value[0] != 48:
                    text(line[start:at])
                    hole(value)
                    kinds |= 1 << HTTP_CODE
                    start = end
                    pos = end + 1
            if starts(_METHOD_KEY, pos):
                at = pos + 9
                end = find(b'"', at + 1) + 1
                value = line[at:end]
                if end and len(value) > 2 and not value[1:-1].translate(None, _STRING_BYTES):
                    text(line[start:at])
                    hole(value)
                    kinds |= 1 << HTTP_METHOD
                    start = end
                    pos = end + 1
            if starts(_URL_KEY, pos):
                at = pos + 6
                end = find(b'"', at + 1) + 1
                value = line[at:end]
                if end and len(value) > 2 and not value[1:-1].translate(None, _STRING_BYTES):
                    text(line[start:at])
                    hole(value)
                    kinds |= 1 << HTTP_URL
                    start = pos = end
    at = find(_SUMMARY_KEY, pos)
    if at >= 0:
        at += 12  # the hole is the string's text, without its quotes (compact prints it as it is)
        end = find(b'"', at)
        value = line[at:end]
        if end > at and not value.translate(None, _STRING_BYTES):
            text(line[start:at])
            hole(value)
            kinds |= 1 << SUMMARY
            start = pos = end
    # The response's time: usually the flow's time again, at the very end.
    at = len(line) - len(flow_time) - 9
    if at >= pos and line[at:] == b',"time":' + flow_time + b"}":
        text(line[start : at + 8])
        hole(flow_time)
        text(b"}")
        return (kinds | 1 << TIME, *texts), values
    return _cut_tail(line, pos, start, kinds, texts, values)


def _cut_other(line: bytes) -> tuple[tuple, list[bytes]] | None:
    """``cut`` of a line that is not a flow: its only hole is the response's time at the end."""
    return _cut_tail(line, 0, 0, 0, [], [])


def _cut_tail(
    line: bytes, pos: int, start: int, kinds: int, texts: list[bytes], values: list[bytes]
) -> tuple[tuple, list[bytes]] | None:
    """The end of ``cut``: a response time other than the flow's, at the end of the line."""
    if line.endswith(b'"}'):
        at = line.rfind(_TIME_KEY, pos)
        if at >= 0:
            value = line[at + 8 : -1]
            if not _timestamp_ok(value):
                return None
            texts.append(line[start : at + 8])
            values.append(value)
            kinds |= 1 << TIME
            start = len(line) - 1
    if not kinds:
        return None
    texts.append(line[start:])
    return (kinds, *texts), values


class TemplateCache:
    """The checked templates of one input."""

    def __init__(self) -> None:
        self._templates: dict[tuple, Template | None] = {}

    def match(self, line: bytes) -> tuple[Template, list[bytes]] | None:
        """The checked template of a line and its hole values, or None (decode the line then)."""
        found = cut(line)
        if found is None:
            return None
        key, values = found
        template = self._templates.get(key)
        if template is None:
            return None
        return template, values

    def get(self, key: tuple) -> Template | None:
        """The checked template of a key that :func:`cut` gave, or None."""
        return self._templates.get(key)

    def learn(self, line: bytes, obj: dict, key: tuple | None = None) -> Template | None:
        """Check and keep the template of a line the decoder proved canonical (``obj`` is its dict);
        ``key`` is the line's key when the caller has cut it already. Returns the checked template."""
        if key is None:
            found = cut(line)
            if found is None:
                return None
            key = found[0]
        if key in self._templates:
            return self._templates[key]
        kinds = tuple(kind for kind in range(len(HOLE_NAMES)) if key[0] >> kind & 1)
        texts: tuple[bytes, ...] = key[1:]
        if len(self._templates) >= MAX_TEMPLATES:
            self._templates.clear()
        template = self._templates[key] = _checked(Template(texts, kinds), line, obj)
        return template

    def tried(self, key: tuple) -> bool:
        """Whether a key was learned, whether its template checked out or not."""
        return key in self._templates


_SENTINEL_TOKENS = {kind: orjson.dumps(value) for kind, value in _SENTINELS.items()}
_SENTINEL_TOKENS[SUMMARY] = _SENTINEL_TOKENS[SUMMARY][1:-1]  # its hole holds no quotes


def _hole_container(obj: dict, kind: int) -> tuple[dict, str]:
    """The dict holding a hole's field and the field's name (KeyError and co. when absent)."""
    if kind == TIME:
        return obj, "time"
    flow = obj["flow"]
    if kind == FLOW_TIME:
        return flow, "time"
    if kind == UUID:
        return flow, "uuid"
    if kind == LATENCY:
        return flow["l7"], "latency_ns"
    if kind in (HTTP_CODE, HTTP_METHOD, HTTP_URL):
        return flow["l7"]["http"], HOLE_NAMES[kind][5:]
    if kind == SUMMARY:
        return flow, "Summary"
    layer4 = flow["l4"]
    if len(layer4) != 1:
        raise KeyError(kind)
    ports = next(iter(layer4.values()))
    return ports, "source_port" if kind == SOURCE_PORT else "destination_port"


def _checked(template: Template, line: bytes, obj: dict) -> Template | None:
    """The template if setting its hole fields in ``obj`` to sentinels re-encodes to its texts.

    ``obj`` (the line's dict) is changed for the check and restored before returning.
    """
    expected = [template.texts[0]]
    for kind, text in zip(template.holes, template.texts[1:], strict=True):
        token = _SENTINEL_TOKENS[kind]
        if token in line:
            return None
        expected.append(token)
        expected.append(text)
    saved: list[tuple[dict, str, object]] = []
    try:
        for kind in template.holes:
            container, name = _hole_container(obj, kind)
            if type(container) is not dict:
                return None
            saved.append((container, name, container[name]))
            container[name] = _SENTINELS[kind]
        same = orjson.dumps(obj) == b"".join(expected)
    except (KeyError, TypeError, AttributeError):
        return None
    finally:
        for container, name, value in reversed(saved):
            container[name] = value
    return template if same else None
