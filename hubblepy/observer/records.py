"""Raw datapath samples in the node's ring: header columns, resolver snapshots, lazy decoding, column filters.

The datapath source hands the observer a :class:`~hubblepy.monitor.reader.RecordBatch` (one buffer,
sample offsets). :func:`header_columns` gathers the first 32 header bytes of every sample at once
(numpy, no per-sample Python) and the ring keeps them beside the bytes; the fixed-offset fields
filters need are read from those rows over whole batches (:func:`message_types`, :func:`verdicts`,
:func:`namespace_keys`).

:class:`RecordDecoder` turns samples into flows when a client reads them, with the resolver state
*as of the batch's capture*: the writer asks :meth:`RecordDecoder.snapshot_id` once per batch, which
freezes the resolver (``snapshot()``) whenever its generation moved, and each entry remembers its
snapshot number. Snapshots no entry refers to any more are dropped.

:func:`compile_column_filter` derives from a request's allow filters a test over the columns that
is *necessary* for a match (never rejects a flow the full filter accepts): verdict and event type
today. Entries that are not raw samples, and raw samples whose header does not tell, always pass;
the full filter still runs on every decoded flow, so the output is the same with or without it.
"""

from __future__ import annotations

import binascii
import os
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from hubblepy.filters import enums
from hubblepy.filters.compiler import normalize_flow_filter
from hubblepy.monitor.reader import RecordBatch
from hubblepy.observer.ring import HEADER_WORDS, KIND_L7, KIND_RAW, RawColumns, Ring, RingEntry
from hubblepy.parser.constants import (
    MSG_ACCESS_LOG,
    MSG_CAPTURE,
    MSG_DROP,
    MSG_POLICY_VERDICT,
    MSG_TRACE,
    MSG_TRACE_SOCK,
    PV_AUDITED,
)
from hubblepy.parser.errors import ERR_INTERNAL, ERR_RECORD, MalformedSample, SkippedSample
from hubblepy.parser.ids import uuid4_strings_from
from hubblepy.proxy.accesslog import LazyRecord, whole_record

FLOW_TYPES = np.array(
    [MSG_DROP, MSG_CAPTURE, MSG_TRACE, MSG_POLICY_VERDICT, MSG_TRACE_SOCK, MSG_ACCESS_LOG], dtype=np.uint8
)
VERDICT_FORWARDED = enums.VERDICT["FORWARDED"]
VERDICT_DROPPED = enums.VERDICT["DROPPED"]
VERDICT_AUDIT = enums.VERDICT["AUDIT"]
VERDICT_REDIRECTED = enums.VERDICT["REDIRECTED"]
_HEADER_BYTES = np.arange(4 * HEADER_WORDS, dtype=np.int64)
_HEADER_WORDS = np.arange(HEADER_WORDS, dtype=np.int64)
_IS_FLOW_TYPE = np.zeros(256, dtype=bool)
_IS_FLOW_TYPE[FLOW_TYPES] = True
_KEY_MIX = np.uint64(0x9E3779B97F4A7C15)
_KEY_SHIFT = np.uint64(32)


_VARIANT = np.frombuffer(b"89ab", dtype=np.uint8)
_SM_ADD = np.uint64(0x9E3779B97F4A7C15)
_SM_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_SM_MUL2 = np.uint64(0x94D049BB133111EB)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's output function over an array (a bijection of uint64)."""
    z = x + _SM_ADD
    z = (z ^ (z >> np.uint64(30))) * _SM_MUL1
    z = (z ^ (z >> np.uint64(27))) * _SM_MUL2
    return z ^ (z >> np.uint64(31))


def header_columns(batch: RecordBatch) -> tuple[RawColumns, np.ndarray]:
    """The batch as ring columns (each sample's first 32 header bytes gathered at once) and a
    mask of the samples that are flow messages.

    Samples outside the mask (empty ones, debug messages, unknown types) are not flows: the
    caller hands them to the parser's per-sample path (debug events, error counters).
    """
    offsets, lengths = batch.offsets, batch.lengths
    if not (offsets & 3).any():  # samples start 4-byte aligned (always, from the monitor reader)
        words = np.frombuffer(batch.data, dtype=np.uint32, count=len(batch.data) >> 2)
        head = words[(offsets >> 2)[:, None] + _HEADER_WORDS]
    else:
        raw = np.frombuffer(batch.data, dtype=np.uint8)
        head = raw[offsets[:, None] + _HEADER_BYTES].view(np.uint32)
    is_flow = _IS_FLOW_TYPE[head[:, 0] & 0xFF] & (lengths > 0)
    return RawColumns(offsets, lengths, batch.cpus, head), is_flow


def message_types(head: np.ndarray) -> np.ndarray:
    """Message type (u8 at 0) of each header row."""
    return (head[:, 0] & 0xFF).astype(np.uint8)


def verdicts(head: np.ndarray) -> np.ndarray:
    """The flow.Verdict number each header implies (0 where the header does not tell)."""
    return slot_verdicts(head, None)


def slot_message_types(head: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """:func:`message_types` of rows ``slots`` of ``head`` (reads the one word it needs)."""
    return (head[slots, 0] & 0xFF).astype(np.uint8)


def slot_verdicts(head: np.ndarray, slots: np.ndarray | None) -> np.ndarray:
    """:func:`verdicts` of rows ``slots`` of ``head`` (the ring's header column; None: all rows):
    reads the type word of each row and the policy verdict's two words of those that are one, not
    whole rows."""
    types = head[:, 0] & 0xFF if slots is None else head[slots, 0] & 0xFF
    out = _VERDICT_BY_TYPE[types]
    pv = types == MSG_POLICY_VERDICT
    if pv.any():
        rows = np.flatnonzero(pv)
        at = rows if slots is None else slots[rows]
        value = head[at, 5].view(np.int32)  # policy verdict: s32 at 20
        flags = head[at, 6] >> 24  # u8 at 27
        verdict = np.where(flags & PV_AUDITED, VERDICT_AUDIT, VERDICT_FORWARDED).astype(np.uint8)
        verdict[value > 0] = VERDICT_REDIRECTED
        verdict[value < 0] = VERDICT_DROPPED
        out[rows] = verdict
    return out


_VERDICT_BY_TYPE = np.zeros(256, dtype=np.uint8)  # what the type alone tells (policy verdicts: see above)
_VERDICT_BY_TYPE[MSG_TRACE] = VERDICT_FORWARDED
_VERDICT_BY_TYPE[MSG_DROP] = VERDICT_DROPPED


def namespace_keys(head: np.ndarray) -> np.ndarray:
    """A hash per header of what decides its flow's endpoints: type, endpoint id, the identities
    (u32 at 16 and 20) and the policy verdict's direction flags."""
    ids = (head[:, 4].astype(np.uint64) << _KEY_SHIFT) | head[:, 5]
    rest = (head[:, 0] & 0xFFFF00FF).astype(np.uint64) | (
        (head[:, 6] & 0xFF000000).astype(np.uint64) << _KEY_SHIFT
    )
    return ids ^ (rest * _KEY_MIX)


class RecordDecoder:
    """Decodes the ring's raw samples with the resolver snapshot of their capture (thread-safe).

    ``parser`` is the node's :class:`~hubblepy.parser.Parser`; its resolver is snapshotted when it
    offers ``snapshot()`` (``StaticResolver`` does), otherwise every entry decodes with the live
    resolver. The ring calls the decoder (``decoder(items)``) from the readers' threads.
    """

    def __init__(self, parser: Any, node_name: str) -> None:
        self.parser = parser
        self.node_name = node_name
        self._resolver = parser._resolver
        self._can_snapshot = callable(getattr(self._resolver, "snapshot", None))
        self._parsers: dict[int, Any] = {}
        self._current = -1
        self._generation: Any = object()
        self._lock = threading.Lock()
        self._uuid_keys = np.frombuffer(os.urandom(16), dtype=np.uint64).copy()
        self._templates: Any = None  # WireTemplates, made by the first reader that wants them

    @property
    def can_snapshot(self) -> bool:
        """True when entries decode with a frozen resolver snapshot (the same flow on every read)."""
        return self._can_snapshot

    def wire_templates(self) -> Any:
        """The :class:`~hubblepy.observer.wiretemplates.WireTemplates` of this ring's samples, or None
        when they cannot be used (a resolver without snapshots answers differently over time)."""
        templates = self._templates
        if templates is None:
            from hubblepy.api.observer import observer_pb2
            from hubblepy.codec.fastwire import WireEncoder
            from hubblepy.observer.wiretemplates import WireTemplates

            templates = WireTemplates(self, WireEncoder(observer_pb2.GetFlowsResponse))
            self._templates = templates
        return templates if templates.enabled else None

    # -- writer side ---------------------------------------------------------------------------
    def snapshot_id(self) -> int:
        """Number of the snapshot for a batch captured now (a new one when the resolver changed)."""
        generation = self._resolver.generation
        if generation != self._generation or self._current < 0:
            frozen = self._resolver.snapshot() if self._can_snapshot else self._resolver
            parser = self.parser.bound_to(frozen)
            with self._lock:
                self._current += 1
                self._parsers[self._current] = parser
            self._generation = generation
        return self._current

    def prune(self, oldest: int) -> None:
        """Forget the snapshots older than ``oldest`` (no entry in the ring refers to them)."""
        if next(iter(self._parsers), oldest) >= oldest:
            return
        with self._lock:
            for number in [n for n in self._parsers if n < oldest and n != self._current]:
                del self._parsers[number]
        if self._templates is not None:
            self._templates.prune(oldest)

    @property
    def snapshots(self) -> int:
        return len(self._parsers)

    # -- reader side ---------------------------------------------------------------------------
    def uuids(self, seqs: list[int]) -> list[str]:
        """UUID texts of entries ``seqs``: keyed splitmix64 of each sequence number, so every reader
        (and every decode) of one entry sees the same UUID and no two entries share one (the high
        half alone is a bijection of the sequence number)."""
        seq = np.asarray(seqs, dtype=np.uint64)
        words = np.empty((len(seqs), 2), dtype=np.uint64)
        words[:, 0] = _splitmix64(seq ^ self._uuid_keys[0])
        words[:, 1] = _splitmix64(seq ^ self._uuid_keys[1])
        return uuid4_strings_from(words.tobytes())

    def uuid_text(self, seqs: np.ndarray) -> bytes:
        """The UUID texts of :meth:`uuids`, 36 ASCII bytes each, one after the other (numpy)."""
        seq = np.asarray(seqs, dtype=np.uint64)
        n = len(seq)
        words = np.empty((n, 2), dtype="<u8")
        words[:, 0] = _splitmix64(seq ^ self._uuid_keys[0])
        words[:, 1] = _splitmix64(seq ^ self._uuid_keys[1])
        raw = words.view(np.uint8).reshape(n, 16)
        hexed = np.frombuffer(binascii.hexlify(words.tobytes()), dtype=np.uint8).reshape(n, 32)
        out = np.empty((n, 36), dtype=np.uint8)
        out[:, [8, 13, 18, 23]] = ord("-")
        out[:, 0:8] = hexed[:, 0:8]
        out[:, 9:13] = hexed[:, 8:12]
        out[:, 14] = ord("4")  # version 4
        out[:, 15:18] = hexed[:, 13:16]
        out[:, 19] = _VARIANT[(raw[:, 8] >> 4) & 3]  # variant 10xx
        out[:, 20:23] = hexed[:, 17:20]
        out[:, 24:36] = hexed[:, 20:32]
        return out.tobytes()

    def __call__(self, items: list[tuple[int, int, int, Any, int]]) -> list[RingEntry | None]:
        node = self.node_name
        uids = self.uuids([item[0] for item in items])
        flows: list[dict | None] = []
        shapes: list[Any] | None = None  # per flow: its row shape (see _decode_l7), once there is one
        with self._lock:
            start = 0
            while start < len(items):
                snap, kind = items[start][4], items[start][2]
                end = start + 1
                while end < len(items) and items[end][4] == snap and items[end][2] == kind:
                    end += 1
                parser = self._parsers.get(snap)
                if parser is None:  # pruned meanwhile: the live state is the best we have
                    parser = self._parsers.get(self._current, self.parser)
                group = zip(items[start:end], uids[start:end], strict=True)
                if kind == KIND_L7:
                    if shapes is None:
                        shapes = [None] * len(flows)
                    flows.extend(
                        self._decode_l7(
                            parser, [(t, payload, uid) for (_, t, _, payload, _), uid in group], shapes
                        )
                    )
                else:
                    flows.extend(
                        parser.decode_records([(t, 0, payload, uid) for (_, t, _, payload, _), uid in group])
                    )
                    if shapes is not None:
                        shapes.extend([None] * (end - start))
                start = end
        out: list[RingEntry | None] = []
        for item, flow in zip(items, flows, strict=True):
            if flow is None:
                out.append(None)
                continue
            resp: dict[str, Any] = {"flow": flow, "node_name": flow.get("node_name") or node}
            stamp = flow.get("time")
            if stamp:
                resp["time"] = stamp
            out.append(RingEntry(item[1], resp))
        if shapes is not None:
            for entry, shape in zip(out, shapes, strict=True):
                if shape is not None and entry is not None:
                    entry.shape = shape
        return out

    def _decode_l7(
        self, parser: Any, items: list[tuple[int, Any, str]], shapes: list[Any]
    ) -> list[dict | None]:
        """Flows of access-log records stored as ``(record, correlation, key)`` (see Observer.publish_l7);
        appends to ``shapes`` the row shape of each (None for a flow decoded in full)."""
        seven = parser.seven
        owner = self.parser
        out: list[dict | None] = []
        parser._check_generation()
        for time_ns, (record, correlation, key), uid in items:
            try:
                if key is not None and type(record) is LazyRecord:  # a row: from its template's flow
                    flow, shape = seven.decode_row_shaped(
                        record, key, parser._timestamp(time_ns), uid, correlation
                    )
                else:
                    flow = seven.decode_record(
                        whole_record(record), parser._timestamp(time_ns), uid, correlation
                    )
                    shape = None
                out.append(flow)
                shapes.append(shape)
                owner.flows_decoded += 1
                continue
            except SkippedSample:
                owner.skipped += 1
            except MalformedSample as exc:
                owner.parse_errors += 1
                owner.error_counts[exc.reason] += 1
            except (TypeError, ValueError, OverflowError):
                owner.parse_errors += 1
                owner.error_counts[ERR_RECORD] += 1
            except Exception as exc:  # never raise for one bad record
                owner.parse_errors += 1
                owner.error_counts[ERR_INTERNAL] += 1
                owner.last_error = f"{type(exc).__name__}: {exc}"
            out.append(None)
            shapes.append(None)
        return out


ColumnFilter = Callable[[Ring, np.ndarray], np.ndarray]


def _verdict_numbers(values: list[Any]) -> set[int] | None:
    numbers: set[int] = set()
    for value in values:
        if isinstance(value, int) and not isinstance(value, bool):
            numbers.add(value)
        elif isinstance(value, str) and value in enums.VERDICT:
            numbers.add(enums.VERDICT[value])
        elif isinstance(value, str) and value.lstrip("-").isdigit():
            numbers.add(int(value))
        else:
            return None  # let the full filter judge (and report) it
    return numbers


def _event_types(values: list[Any]) -> set[int] | None:
    wanted: set[int] = set()
    for value in values:
        if not isinstance(value, dict):
            return None
        etype = value.get("type", 0)
        try:
            etype = int(etype)
        except (TypeError, ValueError):
            return None
        if etype == 0:
            return None  # any type
        wanted.add(etype)
    return wanted


def _clauses(ff: dict[str, Any]) -> list[tuple[str, np.ndarray]]:
    """(column name, allowed values) pairs that every flow matching ``ff`` satisfies."""
    out: list[tuple[str, np.ndarray]] = []
    verdicts = ff.get("verdict")
    if isinstance(verdicts, list) and verdicts:
        numbers = _verdict_numbers(verdicts)
        if numbers is not None:
            out.append(("verdict", np.array(sorted(n for n in numbers if 0 <= n < 256), dtype=np.uint8)))
    event_types = ff.get("event_type")
    if isinstance(event_types, list) and event_types:
        types = _event_types(event_types)
        if types is not None:
            out.append(("type", np.array(sorted(t for t in types if 0 <= t < 256), dtype=np.uint8)))
    return out


def compile_column_filter(allow: list[dict[str, Any]]) -> ColumnFilter | None:
    """A test over ring slots that keeps every entry the allow filters may accept (None: no test).

    Raw samples with verdict 0 in the column (not known from the header) are kept for the verdict
    clause; entries that are not raw samples are always kept.
    """
    if not allow:
        return None
    per_filter: list[list[tuple[str, np.ndarray]]] = []
    for ff in allow:
        try:
            clauses = _clauses(normalize_flow_filter(ff))
        except Exception:
            return None  # the full filter reports bad filters
        if not clauses:
            return None  # this filter needs the decoded flow: nothing can be skipped
        per_filter.append(clauses)

    # per clause, a table of the 256 column values it lets pass (verdict 0: the header does not tell)
    tables: list[list[tuple[str, np.ndarray]]] = []
    for clauses in per_filter:
        row = []
        for column, allowed in clauses:
            table = np.zeros(256, dtype=bool)
            table[allowed] = True
            if column == "verdict":
                table[0] = True
            row.append((column, table))
        tables.append(row)
    columns = {column for row in tables for column, _ in row}
    derive = {"verdict": slot_verdicts, "type": slot_message_types}

    def test(ring: Ring, slots: np.ndarray) -> np.ndarray:
        raw = ring.kind[slots] == KIND_RAW
        derived = {column: derive[column](ring.head, slots) for column in columns}
        if len(tables) == 1 and len(tables[0]) == 1:  # the usual request: one clause
            column, table = tables[0][0]
            return table[derived[column]] | ~raw
        keep = np.zeros(len(slots), dtype=bool)
        for row in tables:
            ok = np.ones(len(slots), dtype=bool)
            for column, table in row:
                ok &= table[derived[column]]
            keep |= ok
        return keep | ~raw

    return test


def compile_exact_column_filter(
    allow: list[dict[str, Any]], deny: list[dict[str, Any]]
) -> ColumnFilter | None:
    """A test over ring slots that marks the raw samples the request's filters certainly accept,
    from their columns alone (None: no such test for these filters).

    Only for verdict filters: allow filters that name nothing but known verdicts, and no deny
    filter. A raw sample's verdict column is what its decoded flow's verdict will be (the parser
    reads the same header fields), so a sample whose column is one of the wanted verdicts matches
    without its flow being tested; samples whose header does not tell (0) are not marked and go
    through the full filter. Entries that are not raw samples are never marked.
    """
    if deny or not allow:
        return None
    wanted: set[int] = set()
    for ff in allow:
        try:
            fields = {key: value for key, value in normalize_flow_filter(ff).items() if value}
        except Exception:
            return None  # the full filter reports bad filters
        values = fields.get("verdict")
        if set(fields) != {"verdict"} or not isinstance(values, list):
            return None
        numbers = _verdict_numbers(values)
        if numbers is None:
            return None
        wanted |= {n for n in numbers if 0 < n < 256}
    if not wanted:
        return None
    table = np.zeros(256, dtype=bool)  # the wanted verdicts (never 0: a header that does not tell)
    table[sorted(wanted)] = True

    def test(ring: Ring, slots: np.ndarray) -> np.ndarray:
        return (ring.kind[slots] == KIND_RAW) & table[slot_verdicts(ring.head, slots)]

    return test
