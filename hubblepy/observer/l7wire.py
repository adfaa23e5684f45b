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
_FLOW_VARYING = ("time", "uuid", "l7", "trace_context", "Summary")  # what a row shape leaves None
_L7_VARYING = ("latency_ns", "http")
_HTTP_VARYING = ("headers",)
_ROW_REQUEST_ID = "X-Request-Id"  # the header of a row's own value (seven._ROW_REQUEST_ID)


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


def _template(level: Any, shape: dict[str, Any], varying: tuple[str, ...]) -> tuple[list[bytes], list[int]]:
    """The fields of ``shape`` in number order as a list of bytes, with b"" where a row puts its own
    value (the keys of ``shape`` holding None), and the position of each of ``varying`` in it (-1:
    not in this shape). A None under another key: KeyError (not a row shape)."""
    ranked: list[tuple[int, bytes | str]] = []
    for key, value in shape.items():
        rank, write = _field(level, key)
        if value is None:
            if key not in varying:
                raise KeyError(key)
            ranked.append((rank, key))
        else:
            ranked.append((rank, write(value)))
    ranked.sort(key=lambda item: item[0])
    parts: list[bytes] = []
    where: dict[str, int] = {}
    for _, part in ranked:
        if type(part) is str:
            where[part] = len(parts)
            parts.append(b"")
        elif parts and parts[-1] and (len(parts) - 1) not in where.values():
            parts[-1] += part  # type: ignore[operator]
        else:
            parts.append(part)  # type: ignore[arg-type]
    return parts, [where.get(key, -1) for key in varying]


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
        self._times: tuple[Any, bytes] = (None, b"")  # the last flow time and its bytes
        self._tail: tuple[Any, bytes] = (None, b"")  # the last response tail (see _response_tail)

    def _plan(self, shape: tuple[dict, dict, dict]) -> tuple:
        found = self._plans.get(id(shape))
        if found is not None and found[0] is shape:
            return found[1]
        f_shape, l7_shape, http_shape = shape
        plan = (
            *_template(self.flow, f_shape, _FLOW_VARYING),
            *_template(self.l7, l7_shape, _L7_VARYING),
            *_template(self.http, http_shape, _HTTP_VARYING),
        )
        if len(self._plans) >= _KEPT_LIMIT:
            self._plans.clear()
        self._plans[id(shape)] = (shape, plan)
        return plan

    def _header_bytes(self, headers: list[dict]) -> bytes:
        """The ``headers`` field bytes of a header list: each entry's kept by object (a header set's
        entries are shared by its rows), a row's own X-Request-Id entry written anew."""
        kept = self._headers
        tag = self._headers_tag
        out = []
        for entry in headers:
            found = kept.get(id(entry))
            if found is not None and found[0] is entry:
                out.append(found[1])
                continue
            if type(entry) is not dict:
                raise fastwire._Fallback
            body = self.header.write(entry)
            wire = tag + fastwire._varint(len(body)) + body
            if len(entry) == 2 and entry.get("key") == _ROW_REQUEST_ID:  # a row's own: not kept
                out.append(wire)
                continue
            if len(kept) >= _KEPT_LIMIT:
                kept.clear()
            kept[id(entry)] = (entry, wire)
            out.append(wire)
        return b"".join(out)

    def encode(self, response: dict[str, Any], shape: tuple[dict, dict, dict]) -> bytes | None:
        """The serialized GetFlowsResponse of ``response`` (``flow``, ``node_name``, ``time``) whose
        flow was built from ``shape``; None when this cannot tell (encode it as usual then)."""
        try:
            (
                flow_parts,
                (at_time, at_uuid, at_l7, at_trace, at_summary),
                l7_parts,
                l7_at,
                http_parts,
                http_at,
            ) = self._plan(shape)
            flow = response["flow"]
            l7 = flow["l7"]
            http = l7["http"]
            if http_at[0] >= 0:
                http_parts = http_parts.copy()
                http_parts[http_at[0]] = self._header_bytes(http["headers"])
            http_body = b"".join(http_parts)
            l7_parts = l7_parts.copy()
            at_latency, at_http = l7_at
            l7_parts[at_http] = self._http_tag + fastwire._varint(len(http_body)) + http_body
            if at_latency >= 0:
                text = l7["latency_ns"]
                latency = int(text)
                if not 0 < latency < _UINT64_LIMIT or text != str(latency):
                    return None
                l7_parts[at_latency] = self._latency_tag + fastwire._varint(latency)
            l7_body = b"".join(l7_parts)
            flow_parts = flow_parts.copy()
            stamp = flow["time"]
            times = self._times
            if times[0] != stamp:
                times = self._times = (stamp, self._time(stamp))
            flow_parts[at_time] = times[1]
            flow_parts[at_uuid] = self._uuid(flow["uuid"])
            flow_parts[at_l7] = self._l7_tag + fastwire._varint(len(l7_body)) + l7_body
            if at_trace >= 0:
                value = flow["trace_context"]
                if type(value) is not dict:
                    return None
                body = self.trace.write(value)
                flow_parts[at_trace] = self._trace_tag + fastwire._varint(len(body)) + body
            if at_summary >= 0:
                flow_parts[at_summary] = self._summary(flow["Summary"])
            flow_body = b"".join(flow_parts)
            tail = self._tail
            key = (response.get("node_name"), response.get("time"), tuple(response))
            if tail[0] != key:
                tail = self._tail = (key, self._response_tail(response))
            return self._flow_tag + fastwire._varint(len(flow_body)) + flow_body + tail[1]
        except (fastwire._Fallback, KeyError, TypeError, ValueError, OverflowError):
            return None

    def _response_tail(self, response: dict[str, Any]) -> bytes:
        """The bytes of the response's fields after ``flow`` (``node_name``, ``time``; KeyError for
        any other)."""
        slots: list[tuple[int, bytes]] = []
        for key, value in response.items():
            if key != "flow" and value is not None:
                rank, write = _field(self.response, key if key in ("node_name", "time") else "")
                slots.append((rank, write(value)))
        slots.sort(key=lambda item: item[0])
        if slots and slots[0][0] < self._flow_rank:
            raise KeyError("flow")  # fields before the flow: not this layout
        return b"".join([part for _, part in slots])
