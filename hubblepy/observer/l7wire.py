"""GetFlowsResponse bytes of access-log rows built from their template's flow shape.

A row's flow (``SevenParser.decode_row``) is a copy of its template key's *shape* (the flow, ``l7`` and
``l7.http`` dicts with None where each row puts its own value) with those values set: ``time``,
``uuid``, ``l7`` (``latency_ns``, ``http.headers``), ``trace_context`` and a response's ``Summary``.
Protobuf bytes are the fields in number order, so the bytes of every other field of the shape are
worked out once (with the field writers of :mod:`hubblepy.codec.fastwire`, the ones the node's
:class:`~hubblepy.codec.fastwire.WireEncoder` uses) and a row's response is their join with the
bytes of its own values, written with the same writers (headers: by entry object, as the encoder
keeps sub-messages; ``latency_ns``: the varint of the number). :meth:`RowWire.encode` returns None
for anything else (a value of an unexpected type), and the caller encodes the response as usual.
"""

from __future__ import annotations

from typing import Any

from hubblepy.api.flow import flow_pb2
from hubblepy.api.observer import observer_pb2
from hubblepy.codec import fastwire, schema

_UINT64_LIMIT = 1 << 64
_KEPT_LIMIT = 4096  # shapes and header entries kept (by object) before the tables are emptied


def _level(message_class: Any, tree: dict[str, Any]) -> Any:
    info = schema.message_info_for(message_class.DESCRIPTOR)
    return fastwire._build_level(info, message_class, fastwire._Stats(), tree)


def _direct_tree(prefix: str) -> dict[str, Any]:
    """fastwire.DIRECT's sub-messages under ``prefix`` (e.g. ``flow``), as _build_level's tree."""
    tree: dict[str, Any] = {}
    for path in fastwire.DIRECT:
        head, _, rest = path.partition(".")
        if head != prefix or not rest:
            continue
        node = tree
        for part in rest.split("."):
            node = node.setdefault(part, {})
    return tree


def _field(level: Any, key: str) -> tuple[int, Any]:
    return level.fields[key]


def _segments(level: Any, shape: dict[str, Any]) -> list[bytes | str]:
    """The fields of ``shape`` in number order: bytes for a value, the key for a None (a row's own)."""
    ranked: list[tuple[int, bytes | str]] = []
    for key, value in shape.items():
        rank, write = _field(level, key)
        ranked.append((rank, key if value is None else write(value)))
    ranked.sort(key=lambda item: item[0])
    merged: list[bytes | str] = []
    for _, part in ranked:
        if type(part) is bytes and merged and type(merged[-1]) is bytes:
            merged[-1] = merged[-1] + part
        else:
            merged.append(part)
    return merged


class RowWire:
    """Builds rows' GetFlowsResponse bytes from their shapes (one per ring decoder; not
    thread-safe: the caller holds the ring decoder's lock or a reader's own instance)."""

    def __init__(self) -> None:
        self.response = _level(observer_pb2.GetFlowsResponse, {})
        self.flow = _level(flow_pb2.Flow, _direct_tree("flow"))
        self.l7 = _level(flow_pb2.Layer7, {})
        self.http = _level(flow_pb2.HTTP, {})
        self.header = _level(flow_pb2.HTTPHeader, {})
        self.trace = _level(flow_pb2.TraceContext, {"parent": {}})
        self._plans: dict[int, tuple[Any, tuple]] = {}
        self._headers: dict[int, tuple[dict, bytes]] = {}
        self._flow_tag = fastwire._tag(
            observer_pb2.GetFlowsResponse.DESCRIPTOR.fields_by_name["flow"].number, 2
        )
        self._l7_tag = fastwire._tag(flow_pb2.Flow.DESCRIPTOR.fields_by_name["l7"].number, 2)
        self._http_tag = fastwire._tag(flow_pb2.Layer7.DESCRIPTOR.fields_by_name["http"].number, 2)
        self._headers_tag = fastwire._tag(flow_pb2.HTTP.DESCRIPTOR.fields_by_name["headers"].number, 2)
        self._trace_tag = fastwire._tag(flow_pb2.Flow.DESCRIPTOR.fields_by_name["trace_context"].number, 2)
        self._latency_tag = fastwire._tag(flow_pb2.Layer7.DESCRIPTOR.fields_by_name["latency_ns"].number, 0)
        self._node_name = _field(self.response, "node_name")
        self._response_time = _field(self.response, "time")
        self._flow_rank = _field(self.response, "flow")[0]
        self._time = _field(self.flow, "time")[1]
        self._uuid = _field(self.flow, "uuid")[1]
        self._summary = _field(self.flow, "Summary")[1]

    def _plan(self, shape: tuple[dict, dict, dict]) -> tuple:
        found = self._plans.get(id(shape))
        if found is not None and found[0] is shape:
            return found[1]
        f_shape, l7_shape, http_shape = shape
        plan = (_segments(self.flow, f_shape), _segments(self.l7, l7_shape), _segments(self.http, http_shape))
        if len(self._plans) >= _KEPT_LIMIT:
            self._plans.clear()
        self._plans[id(shape)] = (shape, plan)
        return plan

    def _header_bytes(self, headers: list[dict]) -> bytes:
        kept = self._headers
        tag = self._headers_tag
        out = []
        for entry in headers:
            found = kept.get(id(entry))
            if found is None or found[0] is not entry:
                if type(entry) is not dict:
                    raise fastwire._Fallback
                body = self.header.write(entry)
                found = (entry, tag + fastwire._varint(len(body)) + body)
                if len(kept) >= _KEPT_LIMIT:
                    kept.clear()
                kept[id(entry)] = found
            out.append(found[1])
        return b"".join(out)

    def encode(self, response: dict[str, Any], shape: tuple[dict, dict, dict]) -> bytes | None:
        """The serialized GetFlowsResponse of ``response`` (``flow``, ``node_name``, ``time``) whose
        flow was built from ``shape``; None when this cannot tell (encode it as usual then)."""
        try:
            flow_parts, l7_parts, http_parts = self._plan(shape)
            flow = response["flow"]
            l7 = flow["l7"]
            http = l7["http"]
            out: list[bytes] = []
            for part in http_parts:
                if type(part) is bytes:
                    out.append(part)
                elif part == "headers":
                    out.append(self._header_bytes(http["headers"]))
                else:
                    return None
            http_body = b"".join(out)
            out = []
            for part in l7_parts:
                if type(part) is bytes:
                    out.append(part)
                elif part == "http":
                    out.append(self._http_tag + fastwire._varint(len(http_body)) + http_body)
                elif part == "latency_ns":
                    latency = int(l7["latency_ns"])
                    if not 0 < latency < _UINT64_LIMIT or l7["latency_ns"] != str(latency):
                        return None
                    out.append(self._latency_tag + fastwire._varint(latency))
                else:
                    return None
            l7_body = b"".join(out)
            out = []
            for part in flow_parts:
                if type(part) is bytes:
                    out.append(part)
                elif part == "l7":
                    out.append(self._l7_tag + fastwire._varint(len(l7_body)) + l7_body)
                elif part == "time":
                    out.append(self._time(flow["time"]))
                elif part == "uuid":
                    out.append(self._uuid(flow["uuid"]))
                elif part == "Summary":
                    out.append(self._summary(flow["Summary"]))
                elif part == "trace_context":
                    value = flow["trace_context"]
                    if type(value) is not dict:
                        return None
                    body = self.trace.write(value)
                    out.append(self._trace_tag + fastwire._varint(len(body)) + body)
                else:
                    return None
            flow_body = b"".join(out)
            slots: list[tuple[int, bytes]] = [
                (self._flow_rank, self._flow_tag + fastwire._varint(len(flow_body)) + flow_body)
            ]
            for key, value in response.items():
                if key == "node_name":
                    slots.append((self._node_name[0], self._node_name[1](value)))
                elif key == "time":
                    slots.append((self._response_time[0], self._response_time[1](value)))
                elif key != "flow":
                    return None
            slots.sort(key=lambda item: item[0])
            return b"".join([part for _, part in slots])
        except (fastwire._Fallback, KeyError, TypeError, ValueError, OverflowError):
            return None
