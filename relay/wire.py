"""Read the top-level fields of a serialized ``observer.GetFlowsResponse`` without decoding the flow.

The relay forwards node responses as the bytes it received; to order them it needs only the
response's ``time`` (field 1001) and which oneof member is set. Scanning the few top-level tags is
much cheaper than parsing the whole message.
"""

from __future__ import annotations

from hubblepy.codec.timestamps import canonical_ns

KIND_FLOW = 1
KIND_NODE_STATUS = 2
KIND_LOST_EVENTS = 3
_FIELD_NODE_NAME = 1000
_FIELD_TIME = 1001


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def _timestamp_ns(buf: bytes, pos: int, end: int) -> int:
    seconds = nanos = 0
    while pos < end:
        tag, pos = _varint(buf, pos)
        value, pos = _varint(buf, pos)  # both Timestamp fields are varints
        if tag == 0x08:
            seconds = value - (1 << 64) if value >= 1 << 63 else value
        elif tag == 0x10:
            nanos = value
    return seconds * 1_000_000_000 + nanos


def scan_response(buf: bytes) -> tuple[int, int]:
    """``(time_ns, kind)`` of a serialized GetFlowsResponse (0 when absent / unknown)."""
    pos = 0
    end = len(buf)
    time_ns = 0
    kind = 0
    while pos < end:
        tag, pos = _varint(buf, pos)
        field = tag >> 3
        wire_type = tag & 7
        if wire_type == 2:
            length, pos = _varint(buf, pos)
            if field == _FIELD_TIME:
                time_ns = _timestamp_ns(buf, pos, pos + length)
            elif 1 <= field <= 3:
                kind = field
            pos += length
        elif wire_type == 0:
            _, pos = _varint(buf, pos)
        elif wire_type == 1:
            pos += 8
        elif wire_type == 5:
            pos += 4
        else:
            break
    return time_ns, kind


def split_batch(buf: bytes) -> list[bytes]:
    """The GetFlowsResponse bytes packed in a hubblepy batch (``repeated bytes responses = 1``)."""
    out = []
    pos = 0
    end = len(buf)
    while pos < end:
        tag, pos = _varint(buf, pos)
        if tag & 7 != 2:
            raise ValueError("malformed batch")
        length, pos = _varint(buf, pos)
        if tag >> 3 == 1:
            out.append(buf[pos : pos + length])
        pos += length
    return out


_TIME_KEY = b'"time":"'


def json_line_info(line: bytes) -> tuple[int, int]:
    """``(time_ns, kind)`` of a canonical GetFlowsResponse JSON line (the top-level ``time`` is its last key)."""
    if line.startswith(b'{"flow"'):
        kind = KIND_FLOW
    elif line.startswith(b'{"lost_events"'):
        kind = KIND_LOST_EVENTS
    elif line.startswith(b'{"node_status"'):
        kind = KIND_NODE_STATUS
    else:
        kind = 0
    at = line.rfind(_TIME_KEY)
    if at < 0:
        return 0, kind
    start = at + len(_TIME_KEY)
    end = line.find(b'"', start)
    return canonical_ns(line[start:end].decode("ascii", "replace")), kind
