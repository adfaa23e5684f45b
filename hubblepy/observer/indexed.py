"""The node-to-relay indexed batch: gRPC-framed responses with each one's time and kind beside them.

``hubblepy.Batch/GetFlowsIndexed`` (a hubblepy extension; upstream clients never call it) streams
messages of four ``bytes`` fields:

1. ``frames``: serialized ``observer.GetFlowsResponse`` messages, each with its 5-byte gRPC prefix
   (flag 0, big-endian length): the bytes a relay sends its own clients for them, unchanged;
2. ``times``: each response's ``time`` (field 1001) in nanoseconds, little-endian int64;
3. ``kinds``: one byte per response, which oneof member is set (:data:`KIND_FLOW`,
   :data:`KIND_NODE_STATUS`, :data:`KIND_LOST_EVENTS`, 0 for none);
4. ``ends``: where each framed response ends in ``frames``, little-endian uint32.

Times and kinds are what :func:`scan_response` reads from the response itself (0 when absent), so a
relay merges by them without parsing a single response. A node fills them from what it knows: the
ring's time column for responses made from wire templates or cached bytes (the template writes that
time into the response), :func:`scan_response` for the others.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2
from google.protobuf.message import DecodeError

KIND_FLOW = 1
KIND_NODE_STATUS = 2
KIND_LOST_EVENTS = 3

_PREFIX = struct.Struct(">BI")
_MAX_PARTS = 16  # an indexed batch's buffers hold runs as they are; more parts (single responses) are joined


def _classes() -> tuple[Any, Any, Any]:
    """Message classes that read only envelopes: a response's (``Head``), a batch's (``Batch``) and
    an indexed batch (``Indexed``).

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
    indexed = proto.message_type.add(name="Indexed")
    for number, name in enumerate(("frames", "times", "kinds", "ends"), 1):
        indexed.field.add(name=name, number=number, type=field.TYPE_BYTES, label=field.LABEL_OPTIONAL)
    pool.Add(proto)
    return tuple(
        message_factory.GetMessageClass(pool.FindMessageTypeByName(f"hubblepy.relaywire.{name}"))
        for name in ("Head", "Batch", "Indexed")
    )


Head, Batch, Indexed = _classes()  # Indexed: the batch as protobuf reads it (the relay reads it by hand)
_parse_head = Head.FromString


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


def frame_ends(frames: bytes, start: int = 0) -> list[int]:
    """Where each gRPC-framed message of ``frames`` ends, plus ``start`` (a run's offset in its batch)."""
    ends = []
    pos = 0
    size = len(frames)
    unpack = _PREFIX.unpack_from
    while pos < size:
        pos += 5 + unpack(frames, pos)[1]
        ends.append(start + pos)
    if pos != size:
        raise ValueError("truncated gRPC frame")
    return ends


def _field_head(number: int, size: int) -> bytes:
    """The tag and varint length of a length-delimited field of ``size`` bytes."""
    head = bytearray((number << 3 | 2,))
    while size >= 0x80:
        head.append((size & 0x7F) | 0x80)
        size >>= 7
    head.append(size)
    return bytes(head)


def _field(number: int, payload: bytes) -> bytes:
    """One length-delimited field: tag, varint length, payload."""
    return _field_head(number, len(payload)) + payload


class IndexedBatcher:
    """Collects responses (plain or as framed runs with their times) into indexed batch messages."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.times: list[Any] = []  # int64 arrays and lists of ints, in order
        self.kinds = bytearray()
        self.sizes: list[Any] = []  # framed sizes, as ``times``
        self.size = 0
        self.count = 0
        self._times: list[int] = []  # the plain responses' since the last run
        self._sizes: list[int] = []

    def __len__(self) -> int:
        return self.count

    def add(self, wire: bytes) -> None:
        """One serialized response (its time and kind read from it)."""
        time_ns, kind = scan_response(wire)
        self.parts.append(_PREFIX.pack(0, len(wire)))
        self.parts.append(wire)
        self.size += len(wire) + 5
        self.count += 1
        self._times.append(time_ns)
        self._sizes.append(len(wire) + 5)
        self.kinds.append(kind)

    def add_frames(self, frames: bytes, times: Any, sizes: Any = None) -> None:
        """A run of framed flow responses whose times are ``times`` (and framed sizes ``sizes``,
        read from the frames when not given)."""
        if sizes is None:
            sizes = np.diff(np.asarray(frame_ends(frames), dtype=np.int64), prepend=0)
        n = len(times)
        if len(sizes) != n or int(np.sum(sizes)) != len(frames):
            raise ValueError("a framed run, its times and its sizes do not agree")
        if self._times:
            self.times.append(self._times)
            self.sizes.append(self._sizes)
            self._times, self._sizes = [], []
        self.parts.append(frames)
        self.size += len(frames)
        self.count += n
        self.times.append(times)
        self.sizes.append(sizes)
        self.kinds.extend(b"\x01" * n)

    def message(self) -> bytes:
        """The indexed batch of what was added (and start over)."""
        return b"".join(self.buffers())

    def buffers(self, framed: bool = False) -> list[bytes]:
        """The indexed batch of what was added as consecutive buffers (and start over): its
        ``frames`` field's head, the framed responses (runs not copied, single responses joined),
        the other fields. ``framed``: with the batch's own 5-byte gRPC prefix in front (for a
        transport that sends buffers as they are)."""
        times = [*self.times, self._times]
        sizes = [*self.sizes, self._sizes]
        ends = np.cumsum(np.concatenate([np.asarray(s, dtype=np.int64) for s in sizes]))
        parts = self.parts if len(self.parts) <= _MAX_PARTS else [b"".join(self.parts)]
        head = _field_head(1, self.size)
        tail = b"".join(
            (
                _field(2, np.concatenate([np.asarray(t, dtype="<i8") for t in times]).tobytes()),
                _field(3, bytes(self.kinds)),
                _field(4, ends.astype("<u4").tobytes()),
            )
        )
        if framed:
            head = _PREFIX.pack(0, len(head) + self.size + len(tail)) + head
        self.__init__()  # type: ignore[misc]
        return [head, *parts, tail]


class Run:
    """One indexed batch as the relay reads it: ``frames`` (bytes or a view), ``times`` (int64 array),
    ``kinds`` (bytes) and ``ends`` (int64 array), one entry per response."""

    __slots__ = ("frames", "times", "kinds", "ends")

    def __init__(self, frames: bytes | memoryview, times: np.ndarray, kinds: bytes, ends: np.ndarray) -> None:
        self.frames = frames
        self.times = times
        self.kinds = kinds
        self.ends = ends

    def __len__(self) -> int:
        return len(self.ends)

    def wires(self) -> list[bytes]:
        """The responses without their prefixes."""
        view = memoryview(self.frames)
        out = []
        start = 0
        for end in self.ends.tolist():
            out.append(bytes(view[start + 5 : end]))
            start = end
        return out


def _read_fields(message: bytes) -> list[memoryview]:
    """The four ``bytes`` fields of an indexed batch, as views of ``message`` (no copies)."""
    view = memoryview(message)
    fields: list[memoryview | None] = [None, None, None, None]
    pos, size = 0, len(message)
    while pos < size:
        tag = message[pos]
        number = tag >> 3
        if tag & 7 != 2 or not 1 <= number <= 4:
            raise ValueError("malformed indexed batch: unexpected field")
        pos += 1
        length = shift = 0
        while True:
            if pos >= size or shift > 35:
                raise ValueError("malformed indexed batch: truncated")
            byte = message[pos]
            pos += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        if pos + length > size:
            raise ValueError("malformed indexed batch: truncated")
        fields[number - 1] = view[pos : pos + length]
        pos += length
    empty = view[0:0]
    return [field if field is not None else empty for field in fields]


def parse_indexed(message: bytes) -> Run:
    """The :class:`Run` of an indexed batch message (its frames a view of ``message``); ValueError
    when it does not hold together."""
    frames, times_field, kinds_view, ends_field = _read_fields(message)
    kinds = bytes(kinds_view)
    n = len(kinds)
    if len(times_field) != 8 * n or len(ends_field) != 4 * n:
        raise ValueError("malformed indexed batch: columns of different lengths")
    times = np.frombuffer(times_field, dtype="<i8")
    ends = np.frombuffer(ends_field, dtype="<u4").astype(np.int64)
    if n:
        # every frame's prefix must say what ``ends`` says (flag 0, the length up to its end): the
        # big-endian u32 at every byte offset (a view with stride 1), read at each prefix's length
        starts = np.empty(n, dtype=np.int64)
        starts[0] = 0
        starts[1:] = ends[:-1]
        sizes = ends - starts - 5
        if ends[-1] != len(frames) or sizes.min() < 0:
            raise ValueError("malformed indexed batch: frame ends")
        words = np.ndarray((len(frames) - 3,), dtype=">u4", buffer=frames, strides=(1,))
        if (words[starts + 1] != sizes).any() or np.frombuffer(frames, np.uint8)[starts].any():
            raise ValueError("malformed indexed batch: frame prefixes")
    return Run(frames, times, kinds, ends)
