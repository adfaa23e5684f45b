"""Read the top-level fields of a serialized ``observer.GetFlowsResponse`` without decoding the flow.

The relay forwards node responses as the bytes it received; to order them it needs only the
response's ``time`` (field 1001) and which oneof member is set. Parsing them with a message type
that declares the flow as opaque bytes costs a fraction of decoding the flow (and of a tag scan
in Python: 2 µs against 7.5 µs a response here).
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2
from google.protobuf.message import DecodeError

from hubblepy.codec.timestamps import canonical_ns

KIND_FLOW = 1
KIND_NODE_STATUS = 2
KIND_LOST_EVENTS = 3


def _head_classes() -> tuple[Any, Any]:
    """Message classes that read only the envelope of a response and of a hubblepy batch.

    ``Head`` declares GetFlowsResponse's oneof members as ``bytes`` (an embedded message and a
    ``bytes`` field are the same on the wire) and its ``time``; ``Batch`` is the batch extension's
    ``repeated bytes responses = 1``. protobuf's C parser reads them without building the flow.
    proto2 syntax keeps presence, so a flow that is an empty message still counts as a flow.
    """
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    proto = descriptor_pb2.FileDescriptorProto(
        name="hubblepy/relay/wire_head.proto",
        package="hubblepy.relaywire",
        syntax="proto2",
        dependency=["google/protobuf/timestamp.proto"],
    )
    field = descriptor_pb2.FieldDescriptorProto
    head = proto.message_type.add(name="Head")
    for name, number in (
        ("flow", KIND_FLOW),
        ("node_status", KIND_NODE_STATUS),
        ("lost_events", KIND_LOST_EVENTS),
    ):
        head.field.add(name=name, number=number, type=field.TYPE_BYTES, label=field.LABEL_OPTIONAL)
    head.field.add(
        name="time",
        number=1001,
        type=field.TYPE_MESSAGE,
        type_name=".google.protobuf.Timestamp",
        label=field.LABEL_OPTIONAL,
    )
    batch = proto.message_type.add(name="Batch")
    batch.field.add(name="responses", number=1, type=field.TYPE_BYTES, label=field.LABEL_REPEATED)
    pool.Add(proto)
    return (
        message_factory.GetMessageClass(pool.FindMessageTypeByName("hubblepy.relaywire.Head")),
        message_factory.GetMessageClass(pool.FindMessageTypeByName("hubblepy.relaywire.Batch")),
    )


_Head, _Batch = _head_classes()
_parse_head = _Head.FromString
_parse_batch = _Batch.FromString


def scan_response(buf: bytes) -> tuple[int, int]:
    """``(time_ns, kind)`` of a serialized GetFlowsResponse (0 when absent / unknown / malformed)."""
    try:
        head = _parse_head(buf)
    except DecodeError:
        return 0, 0
    kind = 0
    if head.HasField("flow"):
        kind = KIND_FLOW
    elif head.HasField("lost_events"):
        kind = KIND_LOST_EVENTS
    elif head.HasField("node_status"):
        kind = KIND_NODE_STATUS
    stamp = head.time
    return stamp.seconds * 1_000_000_000 + stamp.nanos, kind


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
