"""Schema model for the JSON codec, built from the protobuf descriptors at import time.

Nothing here is written by hand per message: field order, names, kinds, enums,
wrappers, oneofs and well-known types all come from the descriptors that the
generated modules under ``hubblepy.api`` register in the default descriptor pool.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from google.protobuf import descriptor_pool
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

# Generated modules that register the Hubble API in the default pool.
API_MODULES = (
    "hubblepy.api.flow.flow_pb2",
    "hubblepy.api.relay.relay_pb2",
    "hubblepy.api.observer.observer_pb2",
    "hubblepy.api.peer.peer_pb2",
)

# Field kinds as small ints (compared often on the slow path).
STRING, BYTES, BOOL, INT32, UINT32, INT64, UINT64, FLOAT, DOUBLE, ENUM, MESSAGE = range(11)
TIMESTAMP, DURATION, WRAPPER, ANY, FIELD_MASK, UNSUPPORTED = range(11, 17)

_SCALAR_KINDS = {
    FieldDescriptor.TYPE_STRING: STRING,
    FieldDescriptor.TYPE_BYTES: BYTES,
    FieldDescriptor.TYPE_BOOL: BOOL,
    FieldDescriptor.TYPE_INT32: INT32,
    FieldDescriptor.TYPE_SINT32: INT32,
    FieldDescriptor.TYPE_SFIXED32: INT32,
    FieldDescriptor.TYPE_UINT32: UINT32,
    FieldDescriptor.TYPE_FIXED32: UINT32,
    FieldDescriptor.TYPE_INT64: INT64,
    FieldDescriptor.TYPE_SINT64: INT64,
    FieldDescriptor.TYPE_SFIXED64: INT64,
    FieldDescriptor.TYPE_UINT64: UINT64,
    FieldDescriptor.TYPE_FIXED64: UINT64,
    FieldDescriptor.TYPE_FLOAT: FLOAT,
    FieldDescriptor.TYPE_DOUBLE: DOUBLE,
    FieldDescriptor.TYPE_ENUM: ENUM,
}

# Kind names as Go's protoreflect.Kind prints them (used in error texts).
_KIND_NAMES = {
    FieldDescriptor.TYPE_STRING: "string",
    FieldDescriptor.TYPE_BYTES: "bytes",
    FieldDescriptor.TYPE_BOOL: "bool",
    FieldDescriptor.TYPE_INT32: "int32",
    FieldDescriptor.TYPE_SINT32: "sint32",
    FieldDescriptor.TYPE_SFIXED32: "sfixed32",
    FieldDescriptor.TYPE_UINT32: "uint32",
    FieldDescriptor.TYPE_FIXED32: "fixed32",
    FieldDescriptor.TYPE_INT64: "int64",
    FieldDescriptor.TYPE_SINT64: "sint64",
    FieldDescriptor.TYPE_SFIXED64: "sfixed64",
    FieldDescriptor.TYPE_UINT64: "uint64",
    FieldDescriptor.TYPE_FIXED64: "fixed64",
    FieldDescriptor.TYPE_FLOAT: "float",
    FieldDescriptor.TYPE_DOUBLE: "double",
    FieldDescriptor.TYPE_ENUM: "enum",
    FieldDescriptor.TYPE_MESSAGE: "message",
    FieldDescriptor.TYPE_GROUP: "group",
}

_WRAPPERS = {
    "google.protobuf.DoubleValue",
    "google.protobuf.FloatValue",
    "google.protobuf.Int64Value",
    "google.protobuf.UInt64Value",
    "google.protobuf.Int32Value",
    "google.protobuf.UInt32Value",
    "google.protobuf.BoolValue",
    "google.protobuf.StringValue",
    "google.protobuf.BytesValue",
}
_UNSUPPORTED_WKT = {"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"}


@dataclass(eq=False, slots=True)
class EnumInfo:
    """One enum type: name -> number, and number -> the name protojson prints."""

    full_name: str
    numbers: dict[str, int]
    names: dict[int, str]


@dataclass(eq=False, slots=True)
class FieldInfo:
    """One field of a message, with everything the codec needs to know."""

    name: str  # proto (text) name: the canonical JSON key
    json_name: str  # lowerCamel name, also accepted on input
    number: int
    index: int  # declaration index
    kind: int
    kind_name: str  # Go protoreflect kind name, for error texts
    repeated: bool
    presence: bool  # explicit presence: written even when it holds the zero value
    oneof: str | None  # full name of the containing oneof
    message: MessageInfo | None = None  # MESSAGE kind only
    enum: EnumInfo | None = None  # ENUM kind (or ENUM inside a wrapper: never)
    wrapped: FieldInfo | None = None  # WRAPPER kind: the "value" field of the wrapper
    descriptor: FieldDescriptor | None = None


@dataclass(eq=False, slots=True)
class MessageInfo:
    """One message type: fields in declaration order plus a name lookup table."""

    full_name: str
    fields: list[FieldInfo] = field(default_factory=list)
    by_key: dict[str, FieldInfo] = field(default_factory=dict)
    oneof_members: dict[str, list[FieldInfo]] = field(default_factory=dict)
    descriptor: Descriptor | None = None


_messages: dict[str, MessageInfo] = {}
_enums: dict[str, EnumInfo] = {}
_loaded = False


def _load_api() -> None:
    global _loaded
    if not _loaded:
        for name in API_MODULES:
            importlib.import_module(name)
        _loaded = True


def enum_info(desc: EnumDescriptor) -> EnumInfo:
    info = _enums.get(desc.full_name)
    if info is None:
        numbers: dict[str, int] = {}
        names: dict[int, str] = {}
        for value in desc.values:  # declaration order: the first name of a number wins
            numbers[value.name] = value.number
            names.setdefault(value.number, value.name)
        info = EnumInfo(desc.full_name, numbers, names)
        _enums[desc.full_name] = info
    return info


def _field_kind(fd: FieldDescriptor) -> int:
    if fd.type in (FieldDescriptor.TYPE_MESSAGE, FieldDescriptor.TYPE_GROUP):
        name = fd.message_type.full_name
        if name == "google.protobuf.Timestamp":
            return TIMESTAMP
        if name == "google.protobuf.Duration":
            return DURATION
        if name == "google.protobuf.Any":
            return ANY
        if name == "google.protobuf.FieldMask":
            return FIELD_MASK
        if name in _WRAPPERS:
            return WRAPPER
        if name in _UNSUPPORTED_WKT:
            return UNSUPPORTED
        return MESSAGE
    return _SCALAR_KINDS[fd.type]


def _field_info(fd: FieldDescriptor) -> FieldInfo:
    kind = _field_kind(fd)
    oneof = fd.containing_oneof
    info = FieldInfo(
        name=fd.name,
        json_name=fd.json_name,
        number=fd.number,
        index=fd.index,
        kind=kind,
        kind_name=_KIND_NAMES[fd.type],
        repeated=fd.is_repeated,
        presence=bool(fd.has_presence) and not fd.is_repeated,
        oneof=oneof.full_name if oneof is not None else None,
        descriptor=fd,
    )
    if kind == ENUM:
        info.enum = enum_info(fd.enum_type)
    elif kind == MESSAGE:
        info.message = message_info_for(fd.message_type)
    elif kind == WRAPPER:
        info.wrapped = _field_info(fd.message_type.fields_by_name["value"])
    return info


def message_info_for(desc: Descriptor) -> MessageInfo:
    """Schema of a message descriptor (built once, cycles allowed)."""
    info = _messages.get(desc.full_name)
    if info is not None:
        return info
    info = MessageInfo(desc.full_name, descriptor=desc)
    _messages[desc.full_name] = info  # before the fields: recursive types terminate
    for fd in desc.fields:  # declaration order
        finfo = _field_info(fd)
        info.fields.append(finfo)
        if finfo.oneof is not None:
            info.oneof_members.setdefault(finfo.oneof, []).append(finfo)
    # JSON names are looked up first, then proto names (like Go protojson).
    for finfo in info.fields:
        info.by_key.setdefault(finfo.name, finfo)
    for finfo in info.fields:
        info.by_key[finfo.json_name] = finfo
    return info


def find_descriptor(full_name: str) -> Descriptor:
    _load_api()
    return descriptor_pool.Default().FindMessageTypeByName(full_name)


def message_info(full_name: str) -> MessageInfo:
    """Schema of the message called ``full_name`` (e.g. ``"flow.FlowFilter"``)."""
    info = _messages.get(full_name)
    if info is None:
        info = message_info_for(find_descriptor(full_name))
    return info
