"""Read the top-level fields of a serialized ``observer.GetFlowsResponse`` without decoding the flow.

The relay forwards node responses as the bytes it received; to order them it needs only the
response's ``time`` (field 1001) and which oneof member is set. Parsing them with a message type
that declares the flow as opaque bytes costs a fraction of decoding the flow (and of a tag scan
in Python: 2 µs against 7.5 µs a response here). Our nodes' indexed batches carry both beside the
responses (:mod:`hubblepy.observer.indexed`), so the relay reads nothing of those.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError

from hubblepy.codec.timestamps import canonical_ns
from hubblepy.observer.indexed import (
    KIND_FLOW,
    KIND_LOST_EVENTS,
    KIND_NODE_STATUS,
    Batch,
    Run,
    parse_indexed,
    scan_response,
)

__all__ = [
    "KIND_FLOW",
    "KIND_LOST_EVENTS",
    "KIND_NODE_STATUS",
    "Run",
    "json_line_info",
    "parse_indexed",
    "scan_response",
    "split_batch",
]

_parse_batch = Batch.FromString


def split_batch(buf: bytes) -> list[bytes]:
    """The GetFlowsResponse bytes packed in a hubblepy batch (``repeated bytes responses = 1``)."""
    try:
        return list(_parse_batch(buf).responses)
    except DecodeError:
        raise ValueError("malformed batch") from None


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
