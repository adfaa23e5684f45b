"""Canonical dicts -> protobuf wire bytes through the C message constructor.

The node turns every flow it sends into a serialized ``GetFlowsResponse``. Filling a message field
by field from Python (:func:`hubblepy.codec.messages.dict_to_message`) costs one interpreted call per
field; protobuf's C (upb) constructor instead takes the whole nested dict at once, with enum names,
nested dicts and lists as they are. Only a few JSON forms of the canonical dict are not what the
constructor takes: 64-bit integers as strings, bytes as base64, Timestamps as RFC 3339 text,
wrapper types (``UInt32Value``...) as bare values, ``Any`` with ``@type``, floats spelled
``"NaN"``/``"Infinity"`` and the other well-known types. For each message type the keys that hold
such fields, or sub-messages that (transitively) do, are found once from the descriptors; a dict is
then copied only along those keys and the copy handed to the constructor.

The bytes are the ones :func:`dict_to_message` (lenient) + ``SerializeToString`` give: any dict the
constructor refuses (an unknown or camelCase key, a wrong type) is encoded by that slow path, which
also raises its usual :class:`~hubblepy.codec.errors.DecodeError` for bad input.

:class:`WireEncoder` goes one step further for the response, its flow and the parts of the flow
that the parser builds anew for each one (addresses and ports, ``DIRECT``), which it writes itself:
protobuf bytes are the fields in number order, so a message is the join of its fields' bytes. Each
field's bytes come from the cheapest exact source:

* a sub-message, or a list, is serialized by the constructor once per *object*: the parser hands out
  the same read-only endpoint, emitter, event type, interface, service and policy dicts (and node
  label lists) to every flow that needs them, so their bytes are kept by ``id`` (with a reference,
  so the id cannot be reused while kept; a field's table is emptied when it grows past
  ``SHARED_LIMIT``). Dicts in the ring are never changed after they enter it (the ring caches each
  entry's bytes on the same premise); a producer that changed a sub-dict in place after sending it
  would have to send a new one instead.
* strings and Timestamps are written directly (tag, length, UTF-8 / seconds and nanos);
* other scalars are serialized by the constructor once per distinct value.

Anything else (a key the schema does not know, two members of a oneof, a value of the wrong type)
goes to the constructor path above, so the bytes stay those of the field-by-field encoder. When the
sub-dicts are mostly new objects (a replayed file: nothing is shared), the encoder notices it and
uses the one-constructor path for a while, which is cheaper for them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from . import schema
from .errors import DecodeError
from .messages import _bytes_value, _floating_value, _special_filler, dict_to_message
from .timestamps import NS_PER_SECOND, _utc_whole_seconds, parse_rfc3339_ns, parse_timestamp

_Fix = Callable[[Any], Any]
# Per message type: key -> fixer, for the keys whose values the constructor cannot take as they are.
# An empty table means "pass the dict as it is".
_tables: dict[str, dict[str, _Fix]] = {}
_building: set[str] = set()


def _timestamp(value: Any) -> dict[str, int]:
    parsed = parse_timestamp(value) if type(value) is str else None
    if parsed is None:  # another RFC 3339 spelling (or garbage: ValueError -> slow path)
        parsed = divmod(parse_rfc3339_ns(value), NS_PER_SECOND)
    return {"seconds": parsed[0], "nanos": parsed[1]}


def _enum(numbers: dict[str, int]) -> _Fix:
    return lambda value: numbers[value] if type(value) is str else int(value)


def _scalar_fix(f: schema.FieldInfo) -> _Fix | None:
    """How the canonical JSON value of a scalar field becomes what the constructor takes."""
    kind = f.kind
    if kind in (schema.INT64, schema.UINT64):
        return int
    if kind == schema.BYTES:
        return _bytes_value
    if kind in (schema.DOUBLE, schema.FLOAT):
        return _floating_value
    return None  # strings, bools, 32-bit ints and enum names go in as they are


def _message_class(f: schema.FieldInfo) -> type[Message]:
    from google.protobuf import message_factory

    assert f.descriptor is not None
    return message_factory.GetMessageClass(f.descriptor.message_type)


def _field_fix(f: schema.FieldInfo) -> _Fix | None:
    """Fixer of one value (one element for repeated fields); None when it goes in as it is."""
    kind = f.kind
    if kind < schema.MESSAGE:
        return _scalar_fix(f)
    if kind == schema.MESSAGE:
        assert f.message is not None
        sub_name = f.message.full_name
        if sub_name in _building:  # a recursive type: its table is looked up when used
            return lambda value: _fixed(value, _tables[sub_name])
        table = _table(f.message)
        if not table:
            return None
        return lambda value: _fixed(value, table)
    if kind == schema.TIMESTAMP:
        return _timestamp
    if kind == schema.WRAPPER:
        assert f.wrapped is not None
        inner = _scalar_fix(f.wrapped)
        if inner is None:
            return lambda value: {"value": value}
        return lambda value: {"value": inner(value)}
    # Any, Duration, FieldMask, Struct...: rare; built as a message by the slow path's filler.
    cls = _message_class(f)
    fill = _special_filler(f, True)

    def build(value: Any) -> Message:
        sub = cls()
        fill(sub, value)
        return sub

    return build


def _with_descriptors(info: schema.MessageInfo) -> schema.MessageInfo:
    """``info`` with its fields' descriptors attached (a schema built from schema_data lacks them)."""
    if info.descriptor is None or any(f.descriptor is None for f in info.fields):
        info = schema.message_info_for(schema.find_descriptor(info.full_name))
    return info


def _table(info: schema.MessageInfo) -> dict[str, _Fix]:
    name = info.full_name
    table = _tables.get(name)
    if table is not None:
        return table
    info = _with_descriptors(info)
    _building.add(name)
    try:
        table = {}
        for f in info.fields:
            fix = _field_fix(f)
            if fix is None:
                continue
            if f.repeated:
                element = fix
                fix = lambda values, element=element: [element(v) for v in values]  # noqa: E731
            table[f.name] = fix
        _tables[name] = table
        return table
    finally:
        _building.discard(name)


def _fixed(d: dict[str, Any], table: dict[str, _Fix]) -> dict[str, Any]:
    """``d`` with the values under ``table``'s keys fixed (a shallow copy; ``d`` is left alone)."""
    keys = table.keys() & d.keys()
    if not keys:
        return d
    out = dict(d)
    for key in keys:
        value = out[key]
        if value is not None:
            out[key] = table[key](value)
    return out


SHARED_LIMIT = 2048  # sub-message bytes kept by object id, per field (a few MB at most)
VALUE_LIMIT = 4096  # scalar field bytes kept by value, per field

DIRECT = ("flow.IP", "flow.l4.TCP", "flow.l4.UDP", "flow.l4.ICMPv4", "flow.l4.ICMPv6", "flow.l4.SCTP")

# When most sub-messages of PROBE direct writes had to be built (fresh dicts: nothing shared), the
# next PLAIN_RUN encodes take the one-constructor path, which is cheaper for them.
PROBE = 64
PLAIN_RUN = 4096

_VARINT1 = [bytes([n]) for n in range(128)]


def _varint(n: int) -> bytes:
    if 0 <= n < 128:
        return _VARINT1[n]
    if 0 < n < 1 << 35:  # the common sizes, unrolled
        if n < 1 << 14:
            return bytes((n & 127 | 128, n >> 7))
        if n < 1 << 21:
            return bytes((n & 127 | 128, n >> 7 & 127 | 128, n >> 14))
        if n < 1 << 28:
            return bytes((n & 127 | 128, n >> 7 & 127 | 128, n >> 14 & 127 | 128, n >> 21))
        return bytes((n & 127 | 128, n >> 7 & 127 | 128, n >> 14 & 127 | 128, n >> 21 & 127 | 128, n >> 28))
    n &= 0xFFFFFFFFFFFFFFFF  # negative int64: ten bytes of two's complement, as protobuf writes it
    out = bytearray()
    while n > 127:
        out.append((n & 127) | 128)
        n >>= 7
    out.append(n)
    return bytes(out)


@functools.lru_cache(maxsize=4096)
def _seconds_field(whole: str) -> bytes | None:
    """Timestamp ``seconds`` field bytes of a UTC ``YYYY-MM-DDTHH:MM:SS`` (None when invalid)."""
    seconds = _utc_whole_seconds(whole)
    if seconds is None:
        return None
    return b"\x08" + _varint(seconds) if seconds else b""


_timestamp_bodies: dict[str, bytes] = {}  # a flow's time is also its response's: built once


def _timestamp_body(value: Any) -> bytes:
    """Serialized Timestamp of canonical UTC text (``_Fallback`` for any other spelling)."""
    body = _timestamp_bodies.get(value)
    if body is not None:
        return body
    if type(value) is not str or len(value) < 20 or value[-1] != "Z":
        raise _Fallback
    seconds = _seconds_field(value[:19])
    if seconds is None:
        raise _Fallback
    if value[19] == "Z":
        if len(value) != 20:
            raise _Fallback
        body = seconds
    else:
        fraction = value[20:-1]
        if value[19] != "." or not (
            fraction and len(fraction) <= 9 and fraction.isascii() and fraction.isdigit()
        ):
            raise _Fallback
        nanos = int(fraction.ljust(9, "0"))
        body = seconds + b"\x10" + _varint(nanos) if nanos else seconds
    if len(_timestamp_bodies) >= VALUE_LIMIT:
        _timestamp_bodies.clear()
    _timestamp_bodies[value] = body
    return body


def _tag(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


class _Stats:
    """How often sub-message bytes were found kept (parser dicts) or had to be built (fresh dicts)."""

    __slots__ = ("hits", "misses")

    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0


class _Fallback(Exception):
    """The direct writer does not take this dict: use the constructor path."""


_Writer = Callable[[Any], bytes]


class _Level:
    """Direct writer of one message type: key -> (rank in field-number order, field writer)."""

    def __init__(self, info: schema.MessageInfo, cls: type[Message], stats: _Stats) -> None:
        info = _with_descriptors(info)
        self.cls = cls
        self.stats = stats
        self.count = len(info.fields)
        ranks = {f.name: rank for rank, f in enumerate(sorted(info.fields, key=lambda f: f.number))}
        self.fields: dict[str, tuple[int, _Writer]] = {}
        self.oneof_keys = frozenset(f.name for f in info.fields if f.oneof is not None)
        self.table = _table(info)
        self.children: dict[str, _Level] = {}
        for f in info.fields:
            self.fields[f.name] = (ranks[f.name], self._writer(f))

    def _writer(self, f: schema.FieldInfo) -> _Writer:
        if f.repeated or f.kind in (schema.MESSAGE, schema.WRAPPER, schema.ANY, schema.DURATION):
            return self._by_object(f)
        if f.kind == schema.STRING:
            return self._string(f)
        if f.kind == schema.TIMESTAMP:
            return self._timestamp(f)
        return self._by_value(f)

    def _single(self, f: schema.FieldInfo) -> _Writer:
        """Bytes of one field by the constructor: of its message type for (lists of) plain
        sub-messages, else of a message holding only that field."""
        if f.kind == schema.MESSAGE:
            sub_cls, tag = _message_class(f), _tag(f.number, 2)
            assert f.message is not None
            sub_table = _table(f.message)

            def one(value: Any) -> bytes:
                if type(value) is not dict:
                    raise _Fallback
                body = sub_cls(**_fixed(value, sub_table)).SerializeToString()
                return tag + _varint(len(body)) + body

            if not f.repeated:
                return one
            return lambda values: b"".join([one(v) for v in values])
        cls, name, fix = self.cls, f.name, self.table.get(f.name)
        if fix is None:
            return lambda value: cls(**{name: value}).SerializeToString()
        return lambda value: cls(**{name: fix(value)}).SerializeToString()

    def _by_object(self, f: schema.FieldInfo) -> _Writer:
        single, stats = self._single(f), self.stats
        kept_by_id: dict[int, tuple[Any, bytes]] = {}  # per field: the bytes carry its tag

        def write(value: Any) -> bytes:
            kept = kept_by_id.get(id(value))
            if kept is not None and kept[0] is value:
                stats.hits += 1
                return kept[1]
            stats.misses += 1
            wire = single(value)
            if len(kept_by_id) >= SHARED_LIMIT:
                kept_by_id.clear()
            kept_by_id[id(value)] = (value, wire)
            return wire

        return write

    def _by_value(self, f: schema.FieldInfo) -> _Writer:
        single = self._single(f)
        memo: dict[tuple[type, Any], bytes] = {}

        def write(value: Any) -> bytes:
            key = (type(value), value)
            wire = memo.get(key)
            if wire is None:
                wire = single(value)
                if len(memo) >= VALUE_LIMIT:
                    memo.clear()
                memo[key] = wire
            return wire

        return write

    @staticmethod
    def _string(f: schema.FieldInfo) -> _Writer:
        tag, keep_empty = _tag(f.number, 2), f.presence

        def write(value: Any) -> bytes:
            if type(value) is not str:
                raise _Fallback
            if not value and not keep_empty:
                return b""
            data = value.encode()
            return tag + _varint(len(data)) + data

        return write

    @staticmethod
    def _timestamp(f: schema.FieldInfo) -> _Writer:
        tag = _tag(f.number, 2)

        def write(value: Any) -> bytes:
            body = _timestamp_body(value)
            return tag + _VARINT1[len(body)] + body  # at most 2 + 10 + 1 + 5 bytes

        return write

    def write(self, d: dict[str, Any]) -> bytes:
        if self.oneof_keys and len(self.oneof_keys & d.keys()) > 1:
            raise _Fallback  # the constructor keeps the last member, as the field-by-field encoder does
        slots = [b""] * self.count
        fields = self.fields
        for key, value in d.items():
            rank, write = fields[key]  # KeyError (a key the schema does not know): constructor path
            if value is not None:
                slots[rank] = write(value)
        return b"".join(slots)


class WireEncoder:
    """Serialized bytes of one message type from canonical dicts (see the module docstring).

    ``direct`` names the (dotted paths of) sub-messages that are also written directly: by default
    the flow of a ``GetFlowsResponse`` and the parts of it that the parser builds anew for every
    flow (addresses and ports). Other sub-messages are serialized by the constructor and kept.
    """

    def __init__(self, message_class: type[Message], direct: tuple[str, ...] = DIRECT) -> None:
        self.message_class = message_class
        desc: Descriptor = message_class.DESCRIPTOR
        info = schema.message_info_for(desc)
        self.table = _table(info)
        self.level = _shared_level(info, message_class, direct)
        self.probed = 0  # direct writes since the kept/built counts were last looked at
        self.base = (self.level.stats.hits, self.level.stats.misses)  # ... and what they were then
        self.plain_left = 0  # constructor-path encodes to do before trying direct writes again

    def message(self, d: dict[str, Any]) -> Message:
        """The message of ``d`` (as lenient :func:`dict_to_message` builds it)."""
        try:
            return self.message_class(**_fixed(d, self.table))
        except (TypeError, ValueError, KeyError, AttributeError, OverflowError, DecodeError):
            return dict_to_message(d, self.message_class, lenient=True)

    def encode(self, d: dict[str, Any]) -> bytes:
        """Serialized message of ``d``; raises DecodeError for input the codec cannot read."""
        if self.plain_left:  # fresh dicts lately (a replayed file): one constructor call is cheaper
            self.plain_left -= 1
            return self.message(d).SerializeToString()
        try:
            wire = self.level.write(d)
        except (_Fallback, TypeError, ValueError, KeyError, AttributeError, OverflowError, DecodeError):
            return self.message(d).SerializeToString()
        self.probed += 1
        if self.probed >= PROBE:  # the counts are shared by every encoder: compare what they moved
            stats = self.level.stats
            if stats.misses - self.base[1] > stats.hits - self.base[0]:
                self.plain_left = PLAIN_RUN
            self.probed = 0
            self.base = (stats.hits, stats.misses)
        return wire


_levels: dict[tuple[str, tuple[str, ...]], _Level] = {}


def _shared_level(info: schema.MessageInfo, cls: type[Message], direct: tuple[str, ...]) -> _Level:
    """One writer per message type and ``direct`` set, shared by all encoders (and their caches)."""
    key = (info.full_name, direct)
    level = _levels.get(key)
    if level is None:
        tree: dict[str, Any] = {}
        for path in direct:
            node = tree
            for part in path.split("."):
                node = node.setdefault(part, {})
        level = _build_level(info, cls, _Stats(), tree)
        _levels[key] = level
    return level


def _build_level(info: schema.MessageInfo, cls: type[Message], stats: _Stats, tree: dict[str, Any]) -> _Level:
    """A direct writer for ``info`` whose sub-messages named in ``tree`` are written directly too."""
    info = _with_descriptors(info)
    level = _Level(info, cls, stats)
    for f in info.fields:
        if f.name in tree and f.kind == schema.MESSAGE and not f.repeated:
            assert f.message is not None
            child = _build_level(f.message, _message_class(f), stats, tree[f.name])
            tag = _tag(f.number, 2)

            def write(value: Any, child: _Level = child, tag: bytes = tag) -> bytes:
                if type(value) is not dict:
                    raise _Fallback
                body = child.write(value)
                return tag + _varint(len(body)) + body

            level.fields[f.name] = (level.fields[f.name][0], write)
    return level
