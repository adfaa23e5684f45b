"""Turn raw datapath event samples into canonical flow dicts, the way Hubble's parsers do.

Input: what one perf event array sample of ``cilium_events`` holds (a Cilium-layout header followed
by the captured packet bytes, possibly with up to 7 trailing pad bytes) and the CPU it came from.
Output: canonical flow dicts (the "flow" value of one ``hubble observe -o json`` line: proto field
names in declaration order, enums as names, 64-bit ints as strings, defaults omitted).

Decoded message types (datapath-events.md):

* 1 drop (v0-v3), 3 debug capture, 4 trace (v0-v2), 5 policy verdict (32- and 40-byte layouts):
  L3/L4 flows (sections 2.3-2.6, 4.1-4.3);
* 7 trace-sock (current 40-byte layout): SOCK flows (section 4.5);
* 2 debug message: a ``flow.DebugEvent`` dict, handed to ``debug_sink`` rather than returned.
* 129 access log (agent-only, not from the datapath): the type byte followed by an L7 proxy's
  access-log record as JSON, decoded by ``seven.SevenParser`` into an L7 flow (section 5).

Anything else, and every malformed sample, is counted in ``parse_errors`` / ``error_counts`` and
skipped; decoding never raises.

The returned dicts share read-only sub-dicts (endpoints, emitter, event_type, TCP flags, ...)
between flows to keep the per-event cost low: treat flow dicts as immutable, copy before editing.
"""

from __future__ import annotations

import copy
import os
import socket
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

from hubblepy import __version__
from hubblepy.codec.timestamps import format_ns as format_timestamp
from hubblepy.parser import layouts
from hubblepy.parser.constants import (
    AUTH_TYPE_NAMES,
    CAPTURE_IFINDEX_POINTS,
    CAPTURE_PROXY_POINTS,
    CLS_FLAG_GENEVE,
    CLS_FLAG_IPV6,
    CLS_FLAG_L3_DEV,
    CLS_FLAG_VXLAN,
    CLUSTER_LABEL_KEY,
    DEBUG_CAPTURE_POINT_NAMES,
    DEBUG_EVENT_TYPE_NAMES,
    DEFAULT_IP_TRACE_OPTION_TYPE,
    DROP_REASON_NAMES,
    IDENTITY_SCOPE_LOCAL,
    IDENTITY_SCOPE_SHIFT,
    MSG_ACCESS_LOG,
    MSG_CAPTURE,
    MSG_DEBUG,
    MSG_DROP,
    MSG_POLICY_VERDICT,
    MSG_TRACE,
    MSG_TRACE_SOCK,
    POLICY_DENY_REASONS,
    PV_AUDITED,
    PV_DIR_INGRESS,
    PV_DIR_MASK,
    PV_IPV6,
    PV_L3_DEV,
    PV_MATCH_MASK,
    PV_MATCH_SHIFT,
    RESERVED_IDENTITY_LABELS,
    SOCK_L4_NAMES,
    SOCK_XLATE_POINT_NAMES,
    SOCK_XLATE_POST_FWD,
    SOCK_XLATE_POST_REV,
    SOCK_XLATE_PRE_FWD,
    SOCK_XLATE_PRE_REV,
    TRACE_POINT_NAMES,
    TRACE_REASON_CT_REPLY,
    TRACE_REASON_ENCRYPTED,
    TRACE_REASON_MASK,
    TRACE_REASON_NAMES,
    TRACE_REASON_SRV6_DECAP,
    TRACE_REASON_SRV6_ENCAP,
    TRACE_REASON_UNKNOWN,
    TRACE_SOCK_FLAG_IPV6,
    TRACE_TO_LXC,
    TRACE_TO_PROXY,
    bpf_file_name,
    trace_reason_to_proto,
)
from hubblepy.parser.debugmsg import debug_message
from hubblepy.parser.errors import (
    ERR_EMPTY,
    ERR_EXT_VERSION,
    ERR_INTERNAL,
    ERR_INVALID_TYPE,
    ERR_PACKET,
    ERR_TRUNCATED,
    ERR_VERSION,
    MalformedSample,
    SkippedSample,
)
from hubblepy.parser.ids import format_uuid4, uuid4_strings
from hubblepy.parser.packet import (
    EMPTY_PACKET,
    FIRST_ETHERNET,
    FIRST_IPV4,
    FIRST_IPV6,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_SCTP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    OVERLAY_GENEVE,
    OVERLAY_NONE,
    OVERLAY_VXLAN,
    PacketInfo,
    decode_layers,
    decode_overlay,
    ipv6_to_str,
)
from hubblepy.parser.resolver import (
    DnsNameResolver,
    EndpointInfo,
    PolicyMatch,
    Resolver,
    ServiceResolver,
)
from hubblepy.parser.seven import RedactOptions, SevenParser

_VERDICT_CLASS = {"FORWARDED": "allow", "REDIRECTED": "allow", "DROPPED": "deny", "AUDIT": "audit"}
_L4_PROTOCOLS = {
    "TCP": IPPROTO_TCP,
    "UDP": IPPROTO_UDP,
    "SCTP": IPPROTO_SCTP,
    "ICMPv4": IPPROTO_ICMP,
    "ICMPv6": IPPROTO_ICMPV6,
}
_ICMP_PROTOCOLS = (IPPROTO_ICMP, IPPROTO_ICMPV6)


def _policy_port(l4: dict) -> tuple[int, int]:
    """(IP protocol, the port the policy map is keyed by: L4 destination port or ICMP type)."""
    for name, layer in l4.items():
        proto = _L4_PROTOCOLS.get(name, 0)
        if proto in _ICMP_PROTOCOLS:
            return proto, layer.get("type", 0)
        return proto, layer.get("destination_port", 0)
    return 0, 0


def _attach_policies(f: dict, match: PolicyMatch, verdict_name: str, drop_reason: int, ingress: bool) -> None:
    """Policy correlation (newest Hubble rules): allowed verdicts list the allowing policies;
    policy denials (POLICY_DENIED/POLICY_DENY) and AUDIT verdicts (would have been denied) list the
    denying ones; other drops list none. The log is kept. A match that states a different verdict
    (the policy changed between the packet and its parsing) is not used at all."""
    if match.verdict and _VERDICT_CLASS.get(match.verdict) != _VERDICT_CLASS.get(verdict_name):
        return
    if match.policies:
        if verdict_name in ("FORWARDED", "REDIRECTED"):
            f["ingress_allowed_by" if ingress else "egress_allowed_by"] = list(match.policies)
        elif verdict_name == "AUDIT" or drop_reason in POLICY_DENY_REASONS:
            f["ingress_denied_by" if ingress else "egress_denied_by"] = list(match.policies)
    if match.log:
        f["policy_log"] = list(match.log)


_ENDPOINT_CACHE_LIMIT = 1 << 16  # entries per lookup cache before it is emptied
_IPV4_LEN = 4
_IPV6_LEN = 16
_ZERO4 = b"\x00" * _IPV4_LEN
_ZERO16 = b"\x00" * _IPV6_LEN
_UUID_LEN = 16  # random bytes per RawFlow UUID
_MSG_TYPE_COUNT = 256  # the message type is one byte


def _layers_for_cls_flags(flags: int) -> tuple[int, int]:
    """(first packet layer, overlay) selected by trace/drop classifier flags (spec 3.5)."""
    if not flags & CLS_FLAG_L3_DEV:
        first = FIRST_ETHERNET
    else:
        first = FIRST_IPV6 if flags & CLS_FLAG_IPV6 else FIRST_IPV4
    if flags & CLS_FLAG_VXLAN:
        return first, OVERLAY_VXLAN
    if flags & CLS_FLAG_GENEVE:
        return first, OVERLAY_GENEVE
    return first, OVERLAY_NONE


_LAYERS_BY_CLS_FLAGS = tuple(_layers_for_cls_flags(flags) for flags in range(1 << 8))  # one flags byte


_unpack_trace = layouts.TRACE.unpack_from
_unpack_drop = layouts.DROP.unpack_from
_unpack_policy_verdict = layouts.POLICY_VERDICT.unpack_from


class RawFlow(NamedTuple):
    """A received sample kept undecoded, e.g. as a compact ring entry; see ``Parser.materialize``."""

    time_ns: int
    cpu: int
    data: bytes
    uuid: bytes  # 16 random bytes drawn at capture time


def _filter_identity_labels(labels: Iterable[str], identity: int) -> list[str]:
    """Sorted labels; for a local-scope (CIDR) identity keep only the longest-prefix ``cidr:`` label."""
    if identity >> IDENTITY_SCOPE_SHIFT != IDENTITY_SCOPE_LOCAL:
        return sorted(labels)
    kept: list[str] = []
    best: str | None = None
    best_len = -1
    for label in labels:
        if label.startswith("cidr:"):
            _, _, plen = label.rpartition("/")
            length = int(plen) if plen.isdigit() else -1
            if length > best_len:
                best, best_len = label, length
        else:
            kept.append(label)
    if best is not None:
        kept.append(best)
    return sorted(kept)


def _cluster_from_labels(labels: Iterable[str]) -> str:
    """Value of the ``io.cilium.k8s.policy.cluster`` label (any source), or ""."""
    for label in labels:
        _, _, key_value = label.partition(":")
        if key_value.startswith(CLUSTER_LABEL_KEY):
            return key_value[len(CLUSTER_LABEL_KEY) :]
    return ""


def _endpoint_dict(
    ep_id: int,
    identity: int,
    cluster: str,
    namespace: str,
    labels: Sequence[str],
    pod: str,
    workloads: Sequence[tuple[str, str]],
) -> dict:
    d: dict = {}
    if ep_id:
        d["ID"] = ep_id
    if identity:
        d["identity"] = identity
    if cluster:
        d["cluster_name"] = cluster
    if namespace:
        d["namespace"] = namespace
    if labels:
        d["labels"] = list(labels)
    if pod:
        d["pod_name"] = pod
    if workloads:
        d["workloads"] = [_workload(name, kind) for name, kind in workloads]
    return d


def _workload(name: str, kind: str) -> dict:
    w = {}
    if name:
        w["name"] = name
    if kind:
        w["kind"] = kind
    return w


class Parser:
    """Decoder from datapath samples to canonical flow dicts. Not thread-safe: one per reader.

    ``decode_batch`` is the fast path; ``decode`` handles one sample. Counters:
    ``flows_decoded``, ``debug_events_decoded``, ``skipped`` (trace-sock events of unknown
    cgroups), ``parse_errors`` (total) and ``error_counts``
    (by reason: ``empty_sample``, ``invalid_type``, ``truncated_header``, ``unsupported_version``,
    ``unknown_ext_version``, ``malformed_packet``, ``internal_error``). ``last_error`` keeps the
    text of the last internal error for debugging.
    """

    def __init__(
        self,
        resolver: Resolver,
        node_name: str = "",
        *,
        node_labels: Sequence[str] = (),
        emitter_version: str = __version__,
        ip_trace_option_type: int = DEFAULT_IP_TRACE_OPTION_TYPE,
        policy_verdict_layout: int | None = None,
        extension_lengths: dict[int, int] | None = None,
        debug_sink: Callable[[dict], None] | None = None,
        debug_buffer: int = 4096,
        skip_unknown_cgroup_ids: bool = True,
        redact: RedactOptions | None = None,
    ) -> None:
        """Create a parser.

        ``policy_verdict_layout``: None = decide per sample (see ``_policy_verdict_header_len``),
        or force 32 or 40. ``extension_lengths``: bytes added after the fixed header for each
        ``ext_version`` (upstream registers only 0 -> 0; others are rejected). Debug events go to
        ``debug_sink`` when given, otherwise into the bounded deque ``debug_events``.
        ``skip_unknown_cgroup_ids`` (Cilium's ``hubble-skip-unknown-cgroup-ids``, default on)
        drops trace-sock events whose cgroup has no known pod IP; they are counted in ``skipped``.
        ``redact``: what L7 flows hide (``seven.RedactOptions``; default: credential headers and
        URL passwords). Access-log records go through ``self.seven`` (a ``SevenParser``), directly
        or as type-129 samples.
        """
        if policy_verdict_layout not in (None, layouts.POLICY_VERDICT_OLD_LEN, layouts.POLICY_VERDICT_LEN):
            raise ValueError("policy_verdict_layout must be None, 32 or 40")
        self._resolver = resolver
        self._node_name = node_name
        self._node_labels = list(node_labels)
        self._emitter = (
            {"name": "Hubble", "version": emitter_version} if emitter_version else {"name": "Hubble"}
        )
        self._ip_trace_option_type = ip_trace_option_type
        self._pv_layout = policy_verdict_layout
        self._ext_lengths = dict(extension_lengths) if extension_lengths else {0: 0}
        self.debug_events: deque[dict] = deque(maxlen=debug_buffer)
        self._debug_sink = debug_sink if debug_sink is not None else self.debug_events.append
        self.flows_decoded = 0
        self.debug_events_decoded = 0
        self.parse_errors = 0
        self.error_counts: Counter[str] = Counter()
        self.last_error = ""
        self.skipped = 0
        self._skip_unknown_cgroups = skip_unknown_cgroup_ids
        # Optional resolver extensions (resolver module): DNS names and services.
        self._dns_names: Callable[[int, str], Sequence[str]] | None = (
            resolver.dns_names if isinstance(resolver, DnsNameResolver) else None
        )
        self._service_by_addr: Callable[[str, int], dict | None] | None = (
            resolver.service_by_addr if isinstance(resolver, ServiceResolver) else None
        )
        self._names_cache: dict[tuple[int, str | None], list[str] | None] = {}
        self._service_cache: dict[tuple[str | None, int], dict | None] = {}
        self._names_pair_cache: dict[tuple, tuple] = {}
        self._service_pair_cache: dict[tuple, tuple] = {}
        self._generation: int | None = None
        self._endpoint_cache: dict[tuple[str | None, int], tuple[dict, int]] = {}
        self._interface_cache: dict[int, dict] = {}
        self._policy_cache: dict[tuple, PolicyMatch | None] = {}
        self._event_type_cache: dict[tuple[int, int], dict] = {}
        self._file_cache: dict[int, dict] = {}  # file id << 16 | line -> flow "file" dict
        self._trace_meta: dict[int, tuple] = {}
        self._time_cache: tuple[int, str] = (-1, "")
        self._decoders: list[Callable[[bytes, str, str], dict] | None] = [None] * _MSG_TYPE_COUNT
        self._decoders[MSG_DROP] = self._drop
        self._decoders[MSG_CAPTURE] = self._capture
        self._decoders[MSG_TRACE] = self._trace
        self._decoders[MSG_POLICY_VERDICT] = self._policy_verdict
        self._decoders[MSG_TRACE_SOCK] = self._trace_sock
        self.seven = SevenParser(self, redact)
        self._decoders[MSG_ACCESS_LOG] = self.seven.decode_sample
        self._owner: Parser = self  # where a clone (bound_to) adds up its counters

    # --- public API ------------------------------------------------------------------------------
    def decode_batch(self, samples: Iterable[tuple[int, bytes]], now_ns: int) -> list[dict]:
        """Decode ``(cpu, sample bytes)`` pairs received at ``now_ns`` (Unix ns) into flow dicts.

        Debug messages go to the debug sink; malformed samples are counted and skipped.
        """
        if not isinstance(samples, Sequence):
            samples = list(samples)
        if not samples:
            return []
        self._check_generation()
        ts = self._timestamp(now_ns)
        uuids = uuid4_strings(len(samples))
        decoders = self._decoders
        out: list[dict] = []
        append = out.append
        for i, (cpu, data) in enumerate(samples):
            if type(data) is not bytes:  # bytearray/memoryview slices are not hashable cache keys
                data = bytes(data)
            try:
                decoder = decoders[data[0]]
                if decoder is None:
                    if data[0] == MSG_DEBUG:
                        self._debug(cpu, data)
                        continue
                    raise MalformedSample(ERR_INVALID_TYPE)
                append(decoder(data, ts, uuids[i]))
            except SkippedSample:
                self.skipped += 1
            except MalformedSample as exc:
                self.parse_errors += 1
                self.error_counts[exc.reason] += 1
            except IndexError as exc:
                self.parse_errors += 1
                self.error_counts[ERR_EMPTY if not data else ERR_INTERNAL] += 1
                if data:
                    self.last_error = f"IndexError: {exc}"
            except Exception as exc:  # never let one bad sample stop the reader
                self.parse_errors += 1
                self.error_counts[ERR_INTERNAL] += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
        self.flows_decoded += len(out)
        return out

    def capture_batch(self, samples: Iterable[tuple[int, bytes]], now_ns: int) -> list[RawFlow]:
        """Keep samples undecoded as ``RawFlow`` records (cheap), for decoding on demand.

        Done now: empty samples and unknown types are counted as parse errors and dropped, debug
        messages go to the debug sink, and each record gets its UUID (so every reader of the
        same record sees the same one). Everything else happens in ``materialize``, which also
        counts the malformed samples it meets. Endpoint names come from the resolver's state at
        materialization time, not at capture time.
        """
        if not isinstance(samples, Sequence):
            samples = list(samples)
        rnd = os.urandom(_UUID_LEN * len(samples))
        decoders = self._decoders
        out: list[RawFlow] = []
        append = out.append
        for i, (cpu, data) in enumerate(samples):
            if type(data) is not bytes:
                data = bytes(data)
            if not data:
                self.parse_errors += 1
                self.error_counts[ERR_EMPTY] += 1
            elif decoders[data[0]] is not None:
                append(RawFlow(now_ns, cpu, data, rnd[_UUID_LEN * i : _UUID_LEN * (i + 1)]))
            elif data[0] == MSG_DEBUG:
                try:
                    self._debug(cpu, data)
                except MalformedSample as exc:
                    self.parse_errors += 1
                    self.error_counts[exc.reason] += 1
            else:
                self.parse_errors += 1
                self.error_counts[ERR_INVALID_TYPE] += 1
        return out

    def materialize(self, records: Iterable[RawFlow]) -> list[dict]:
        """Flow dicts for ``RawFlow`` records (malformed ones are counted and skipped)."""
        self._check_generation()
        decoders = self._decoders
        out: list[dict] = []
        for time_ns, _cpu, data, uuid_raw in records:
            try:
                decoder = decoders[data[0]]
                if decoder is None:
                    raise MalformedSample(ERR_INVALID_TYPE)
                out.append(decoder(data, self._timestamp(time_ns), format_uuid4(uuid_raw)))
            except SkippedSample:
                self.skipped += 1
            except MalformedSample as exc:
                self.parse_errors += 1
                self.error_counts[exc.reason] += 1
            except Exception as exc:  # never raise for one bad record
                self.parse_errors += 1
                self.error_counts[ERR_INTERNAL] += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
        self.flows_decoded += len(out)
        return out

    def bound_to(self, resolver: Resolver) -> Parser:
        """A parser with this one's settings over another resolver (e.g. a frozen snapshot), with
        its own caches; decoding counters and errors still add up in this parser."""
        clone = copy.copy(self)
        clone._resolver = resolver
        clone._dns_names = resolver.dns_names if isinstance(resolver, DnsNameResolver) else None
        clone._service_by_addr = resolver.service_by_addr if isinstance(resolver, ServiceResolver) else None
        clone._names_cache = {}
        clone._service_cache = {}
        clone._names_pair_cache = {}
        clone._service_pair_cache = {}
        clone._generation = None
        clone._endpoint_cache = {}
        clone._interface_cache = {}
        clone._policy_cache = {}
        clone._trace_meta = {}
        clone._time_cache = (-1, "")
        clone._decoders = list(self._decoders)
        for i, fn in enumerate(self._decoders):  # re-bind the bound methods to the clone
            if fn is not None and getattr(fn, "__self__", None) is self:
                clone._decoders[i] = getattr(clone, fn.__name__)
        clone.seven = SevenParser(clone, self.seven.redact)
        clone._decoders[MSG_ACCESS_LOG] = clone.seven.decode_sample
        clone._owner = self._owner
        return clone

    def decode_records(self, items: Sequence[tuple[int, int, bytes, str]]) -> list[dict | None]:
        """Flow dicts for samples captured earlier: ``(time_ns, cpu, sample, uuid text)`` each.

        One result per item, None for a sample that does not decode (counted like in
        ``decode_batch``; debug messages are not flows and must not be passed here).
        """
        owner = self._owner
        self._check_generation()
        decoders = self._decoders
        out: list[dict | None] = []
        append = out.append
        decoded = 0
        for time_ns, _cpu, data, uid in items:
            try:
                decoder = decoders[data[0]]
                if decoder is None:
                    raise MalformedSample(ERR_INVALID_TYPE)
                append(decoder(data, self._timestamp(time_ns), uid))
                decoded += 1
                continue
            except SkippedSample:
                owner.skipped += 1
            except MalformedSample as exc:
                owner.parse_errors += 1
                owner.error_counts[exc.reason] += 1
            except IndexError as exc:
                owner.parse_errors += 1
                owner.error_counts[ERR_EMPTY if not data else ERR_INTERNAL] += 1
                if data:
                    owner.last_error = f"IndexError: {exc}"
            except Exception as exc:  # never raise for one bad record
                owner.parse_errors += 1
                owner.error_counts[ERR_INTERNAL] += 1
                owner.last_error = f"{type(exc).__name__}: {exc}"
            append(None)
        owner.flows_decoded += decoded
        return out

    def decode(self, cpu: int, data: bytes, now_ns: int) -> dict | None:
        """Decode one sample; returns the flow dict or None (debug message or parse error)."""
        flows = self.decode_batch(((cpu, data),), now_ns)
        return flows[0] if flows else None

    def decode_debug(self, cpu: int, data: bytes) -> dict | None:
        """Decode one debug message (type 2) into a ``flow.DebugEvent`` dict; None if malformed."""
        got: list[dict] = []
        sink, self._debug_sink = self._debug_sink, got.append
        try:
            self._check_generation()
            if data and data[0] == MSG_DEBUG:
                self._debug(cpu, data)
            else:
                raise MalformedSample(ERR_INVALID_TYPE if data else ERR_EMPTY)
        except MalformedSample as exc:
            self.parse_errors += 1
            self.error_counts[exc.reason] += 1
        except Exception as exc:
            self.parse_errors += 1
            self.error_counts[ERR_INTERNAL] += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
        finally:
            self._debug_sink = sink
        return got[0] if got else None

    # --- caches ----------------------------------------------------------------------------------
    def _check_generation(self) -> None:
        gen = self._resolver.generation
        if gen != self._generation:
            self._generation = gen
            self._endpoint_cache.clear()
            self._interface_cache.clear()
            self._policy_cache.clear()
            self._names_cache.clear()
            self._service_cache.clear()
            self._names_pair_cache.clear()
            self._service_pair_cache.clear()
            self.seven.endpoint_cache.clear()

    def _timestamp(self, now_ns: int) -> str:
        cached_ns, text = self._time_cache
        if cached_ns != now_ns:
            text = format_timestamp(now_ns)
            self._time_cache = (now_ns, text)
        return text

    def _event_type(self, msg_type: int, sub_type: int) -> dict:
        key = (msg_type, sub_type)
        d = self._event_type_cache.get(key)
        if d is None:
            d = {"type": msg_type, "sub_type": sub_type} if sub_type else {"type": msg_type}
            self._event_type_cache[key] = d
        return d

    def _build_trace_meta(self, obs: int, reason: int) -> tuple:
        """Per (observation point, reason byte): the trace fields that depend only on those two."""
        dp_reason = reason & TRACE_REASON_MASK
        known = dp_reason != TRACE_REASON_UNKNOWN
        reply_bit = dp_reason == TRACE_REASON_CT_REPLY
        if not known or dp_reason in (TRACE_REASON_SRV6_ENCAP, TRACE_REASON_SRV6_DECAP):
            is_reply = None
        else:
            is_reply = reply_bit
        point_name = "TO_ENDPOINT" if obs == TRACE_TO_LXC else TRACE_POINT_NAMES.get(obs, obs)
        proto_reason = trace_reason_to_proto(dp_reason)
        reason_name = TRACE_REASON_NAMES.get(proto_reason, proto_reason) if proto_reason else None
        encrypted = bool(reason & TRACE_REASON_ENCRYPTED)
        meta = (
            self._event_type(MSG_TRACE, obs),
            point_name,
            reason_name,
            is_reply,
            known,
            reply_bit,
            encrypted,
        )
        self._trace_meta[obs << 8 | reason] = meta
        return meta

    def _file_info(self, file_id: int, line: int) -> dict:
        """The ``file`` dict of a drop (BPF source file name and line), shared between flows."""
        d: dict[str, Any] = {"name": bpf_file_name(file_id)}
        if line:
            d["line"] = line
        self._file_cache[file_id << 16 | line] = d  # at most 256 files x 65536 lines
        return d

    def _interface(self, ifindex: int) -> dict:
        d = self._interface_cache.get(ifindex)
        if d is None:
            name = self._resolver.interface_name(ifindex)
            d = {"index": ifindex, "name": name} if name else {"index": ifindex}
            self._interface_cache[ifindex] = d
        return d

    def _endpoint(self, ip: str | None, dp_identity: int) -> tuple[dict, int]:
        """(Endpoint dict, endpoint id) for an IP and the identity the datapath reported (0 = none)."""
        key = (ip, dp_identity)
        hit = self._endpoint_cache.get(key)
        if hit is None:
            if len(self._endpoint_cache) >= _ENDPOINT_CACHE_LIMIT:
                self._endpoint_cache.clear()
            hit = self._resolve_endpoint(ip, dp_identity)
            self._endpoint_cache[key] = hit
        return hit

    def _resolve_endpoint(self, ip: str | None, dp_identity: int) -> tuple[dict, int]:
        # Datapath-events.md 4.1 step 7: a non-zero datapath identity wins over user space.
        info: EndpointInfo | None = self._resolver.endpoint_by_ip(ip) if ip else None
        if info is not None and info.id:
            identity = dp_identity or info.identity
            labels = sorted(info.labels)
            workloads = info.workloads
        else:
            identity = dp_identity or (info.identity if info is not None else 0)
            labels = self._identity_labels(identity)
            workloads = ()
        namespace = pod = cluster = ""
        if info is not None:
            namespace, pod, cluster = info.namespace, info.pod_name, info.cluster_name
        if not cluster:
            cluster = _cluster_from_labels(labels)
        ep_id = info.id if info is not None else 0
        return _endpoint_dict(ep_id, identity, cluster, namespace, labels, pod, workloads), ep_id

    def _identity_labels(self, identity: int) -> list[str]:
        if not identity:
            return []
        labels = self._resolver.identity_labels(identity)
        if labels is None:
            labels = RESERVED_IDENTITY_LABELS.get(identity, ())
        return _filter_identity_labels(labels, identity)

    def _names(self, endpoint_id: int, ip: str | None) -> list[str] | None:
        """FQDNs of ``ip`` as seen by endpoint ``endpoint_id`` (DNS cache hook), or None."""
        key = (endpoint_id, ip)
        if key not in self._names_cache:
            if len(self._names_cache) >= _ENDPOINT_CACHE_LIMIT:
                self._names_cache.clear()
            lookup = self._dns_names
            names = lookup(endpoint_id, ip) if ip and lookup is not None else None
            self._names_cache[key] = list(names) if names else None
        return self._names_cache[key]

    def _service(self, ip: str | None, port: int) -> dict | None:
        """Service dict ({name, namespace}) for an address and L4 port (service hook), or None."""
        key = (ip, port)
        if key not in self._service_cache:
            if len(self._service_cache) >= _ENDPOINT_CACHE_LIMIT:
                self._service_cache.clear()
            lookup = self._service_by_addr
            self._service_cache[key] = lookup(ip, port) if ip and lookup is not None else None
        return self._service_cache[key]

    def _names_pair(self, key: tuple[int, str | None, int, str | None]) -> tuple:
        """(source_names, destination_names) for (src id, src IP, dst id, dst IP); cached."""
        src_id, src_ip, dst_id, dst_ip = key
        if len(self._names_pair_cache) >= _ENDPOINT_CACHE_LIMIT:
            self._names_pair_cache.clear()
        pair = (self._names(dst_id, src_ip), self._names(src_id, dst_ip))
        self._names_pair_cache[key] = pair
        return pair

    def _services_pair(self, key: tuple[str | None, int, str | None, int]) -> tuple:
        """(source_service, destination_service) for (src IP, src port, dst IP, dst port); cached."""
        src_ip, sport, dst_ip, dport = key
        if len(self._service_pair_cache) >= _ENDPOINT_CACHE_LIMIT:
            self._service_pair_cache.clear()
        pair = (self._service(src_ip, sport), self._service(dst_ip, dport))
        self._service_pair_cache[key] = pair
        return pair

    def _policy_match(
        self, cookie: int, ep_id: int, ingress: bool, remote: int, proto: int, dport: int
    ) -> PolicyMatch | None:
        key = (cookie, ep_id, ingress, remote, proto, dport)
        if key in self._policy_cache:
            return self._policy_cache[key]
        match = self._resolver.policy_for_verdict(cookie, ep_id, ingress, remote, proto, dport)
        if len(self._policy_cache) >= _ENDPOINT_CACHE_LIMIT:
            self._policy_cache.clear()
        self._policy_cache[key] = match
        return match

    # --- shared helpers --------------------------------------------------------------------------
    def _payload(
        self, data: bytes, header_len: int, ext: int, cap_len: int, first: int, overlay: int
    ) -> PacketInfo:
        """Decode the packet after a ``header_len``-byte header (+ the ``ext`` extension length).

        Only ``cap_len`` bytes are decoded: perf pads samples to 8 bytes with trailing zeros.
        """
        ext_len = self._ext_lengths.get(ext)
        if ext_len is None:
            raise MalformedSample(ERR_EXT_VERSION)
        start = header_len + ext_len
        n = len(data)
        if n < start:
            raise MalformedSample(ERR_TRUNCATED)
        end = start + cap_len
        if end > n:
            end = n
        if end <= start:
            return EMPTY_PACKET
        pkt = decode_layers(data, start, end, first)
        if overlay and pkt is not None:
            pkt = decode_overlay(data, pkt, overlay)
        if pkt is None:
            raise MalformedSample(ERR_PACKET)
        return pkt

    def _ip_dict(self, pkt: PacketInfo, source: str | None, xlated: str | None, encrypted: bool) -> dict:
        ip: dict[str, Any] = {"source": source}
        if xlated:
            ip["source_xlated"] = xlated
        ip["destination"] = pkt.ip_destination
        ip["ipVersion"] = pkt.ip_version
        if encrypted:
            ip["encrypted"] = True
        return ip

    def _ip_trace_id(self, trace_id: int) -> dict:
        d: dict = {"trace_id": str(trace_id)}
        if self._ip_trace_option_type:
            d["ip_option_type"] = self._ip_trace_option_type
        return d

    def _tail(
        self,
        f: dict[str, Any],
        flow_type: str,
        src_ep: dict,
        src_id: int,
        src_ip: str | None,
        dst_ep: dict,
        dst_id: int,
        dst_ip: str | None,
        event_type: dict,
        sport: int,
        dport: int,
        reply: bool = False,
        l7: dict | None = None,
    ) -> None:
        """Add the fields every flow kind shares, ``source`` to ``destination_service``, in
        declaration order: endpoints, Type, node, DNS names, ``l7`` (L7 flows), ``reply``, event
        type and services. ``src_id``/``dst_id`` are the endpoint IDs the DNS names are kept by."""
        f["source"] = src_ep
        f["destination"] = dst_ep
        f["Type"] = flow_type
        if self._node_name:
            f["node_name"] = self._node_name
        if self._node_labels:
            f["node_labels"] = self._node_labels
        if self._dns_names is not None:
            names_key = (src_id, src_ip, dst_id, dst_ip)
            pair = self._names_pair_cache.get(names_key) or self._names_pair(names_key)
            if pair[0]:
                f["source_names"] = pair[0]
            if pair[1]:
                f["destination_names"] = pair[1]
        if l7 is not None:
            f["l7"] = l7
        if reply:
            f["reply"] = True
        f["event_type"] = event_type
        if self._service_by_addr is not None:
            service_key = (src_ip, sport, dst_ip, dport)
            pair = self._service_pair_cache.get(service_key) or self._services_pair(service_key)
            if pair[0]:
                f["source_service"] = pair[0]
            if pair[1]:
                f["destination_service"] = pair[1]

    # --- trace (type 4) --------------------------------------------------------------------------
    def _trace(self, data: bytes, ts: str, uid: str) -> dict:
        n = len(data)
        if n < layouts.TRACE_V0_LEN:
            raise MalformedSample(ERR_TRUNCATED)
        (
            _,
            obs,
            source,
            _,
            _,
            cap_len,
            version,
            ext,
            src_label,
            dst_label,
            dst_id,
            reason,
            flags,
            ifindex,
        ) = _unpack_trace(data)
        trace_id = 0
        if version == 2:
            if n < layouts.TRACE_V2_LEN:
                raise MalformedSample(ERR_TRUNCATED)
            header_len = layouts.TRACE_V2_LEN
            trace_id = layouts.U64.unpack_from(data, layouts.TRACE_TRACE_ID_OFFSET)[0]
        elif version == 1:
            if n < layouts.TRACE_V1_LEN:
                raise MalformedSample(ERR_TRUNCATED)
            header_len = layouts.TRACE_V1_LEN
        elif version == 0:
            header_len = layouts.TRACE_V0_LEN
        else:
            raise MalformedSample(ERR_VERSION)
        first, overlay = _LAYERS_BY_CLS_FLAGS[flags]
        pkt = self._payload(data, header_len, ext, cap_len, first, overlay)

        # Original (pre-SNAT) source address, v1+ only. It counts as "SNAT" for the direction
        # whenever it is set, and replaces the packet source when an IP layer was decoded.
        src_ip = pkt.ip_source
        xlated = None
        orig = None
        if version:
            o = layouts.TRACE_ORIG_IP_OFFSET
            if flags & CLS_FLAG_IPV6:
                raw = data[o : o + _IPV6_LEN]
                if raw != _ZERO16:
                    orig = ipv6_to_str(raw)
            else:
                raw = data[o : o + _IPV4_LEN]
                if raw != _ZERO4:
                    orig = socket.inet_ntoa(raw)
        snat = orig is not None
        if snat and src_ip is not None and orig != src_ip:
            xlated, src_ip = src_ip, orig

        eth, _, ip_dst, ip_version, l4, sport, dport, summary, tunnel, _ = pkt
        cache = self._endpoint_cache
        hit = cache.get((src_ip, src_label))
        src_ep, src_id = hit if hit is not None else self._endpoint(src_ip, src_label)
        hit = cache.get((ip_dst, dst_label))
        dst_ep, dst_ep_id = hit if hit is not None else self._endpoint(ip_dst, dst_label)
        meta = self._trace_meta.get(obs << 8 | reason)
        if meta is None:
            meta = self._build_trace_meta(obs, reason)
        event_type, point_name, reason_name, is_reply, known, reply_bit, encrypted = meta
        direction = None
        if source and known:
            direction = "EGRESS" if (source == src_id) != reply_bit or snat else "INGRESS"

        f: dict[str, Any] = {"time": ts, "uuid": uid, "emitter": self._emitter, "verdict": "FORWARDED"}
        if eth is not None:
            f["ethernet"] = eth
        if src_ip is not None:
            if xlated is None and not encrypted:
                f["IP"] = {"source": src_ip, "destination": ip_dst, "ipVersion": ip_version}
            else:
                f["IP"] = self._ip_dict(pkt, src_ip, xlated, encrypted)
        if l4 is not None:
            f["l4"] = l4
        if tunnel is not None:
            f["tunnel"] = tunnel
        self._tail(
            f, "L3_L4", src_ep, src_id, src_ip, dst_ep, dst_ep_id, ip_dst, event_type, sport, dport, is_reply
        )
        if direction is not None:
            f["traffic_direction"] = direction
        f["trace_observation_point"] = point_name
        if reason_name is not None:
            f["trace_reason"] = reason_name
        if trace_id:
            f["ip_trace_id"] = self._ip_trace_id(trace_id)
        if is_reply is not None:
            f["is_reply"] = is_reply
        if ifindex:
            iface = self._interface_cache.get(ifindex)
            f["interface"] = iface if iface is not None else self._interface(ifindex)
        if obs == TRACE_TO_PROXY and dst_id:
            f["proxy_port"] = dst_id
        if summary is not None:
            f["Summary"] = summary
        return f

    # --- drop (type 1) ---------------------------------------------------------------------------
    def _drop(self, data: bytes, ts: str, uid: str) -> dict:
        n = len(data)
        if n < layouts.DROP_V0_LEN:
            raise MalformedSample(ERR_TRUNCATED)
        (
            _,
            reason,
            source,
            _,
            _,
            cap_len,
            version,
            ext,
            src_label,
            dst_label,
            _dst_id,
            line,
            file_id,
            _ext_err,
            _,
        ) = _unpack_drop(data)
        flags = 0
        trace_id = 0
        if version <= 1:
            header_len = layouts.DROP_V0_LEN
        elif version == 2:
            if n < layouts.DROP_V2_LEN:
                raise MalformedSample(ERR_TRUNCATED)
            header_len = layouts.DROP_V2_LEN
            flags = data[layouts.DROP_FLAGS_OFFSET]
        elif version == 3:
            if n < layouts.DROP_V3_LEN:
                raise MalformedSample(ERR_TRUNCATED)
            header_len = layouts.DROP_V3_LEN
            flags = data[layouts.DROP_FLAGS_OFFSET]
            trace_id = layouts.U64.unpack_from(data, layouts.DROP_TRACE_ID_OFFSET)[0]
        else:
            raise MalformedSample(ERR_VERSION)
        first, overlay = _LAYERS_BY_CLS_FLAGS[flags]
        pkt = self._payload(data, header_len, ext, cap_len, first, overlay)

        eth, ip_src, ip_dst, ip_version, l4, sport, dport, summary, tunnel, _ = pkt
        cache = self._endpoint_cache
        hit = cache.get((ip_src, src_label))
        src_ep, src_id = hit if hit is not None else self._endpoint(ip_src, src_label)
        hit = cache.get((ip_dst, dst_label))
        dst_ep, dst_ep_id = hit if hit is not None else self._endpoint(ip_dst, dst_label)

        f: dict[str, Any] = {"time": ts, "uuid": uid, "emitter": self._emitter, "verdict": "DROPPED"}
        if reason:
            f["drop_reason"] = reason
        if eth is not None:
            f["ethernet"] = eth
        if ip_src is not None:
            f["IP"] = {"source": ip_src, "destination": ip_dst, "ipVersion": ip_version}
        if l4 is not None:
            f["l4"] = l4
        if tunnel is not None:
            f["tunnel"] = tunnel
        event_type = self._event_type(MSG_DROP, reason)
        self._tail(f, "L3_L4", src_ep, src_id, ip_src, dst_ep, dst_ep_id, ip_dst, event_type, sport, dport)
        if source:
            f["traffic_direction"] = "EGRESS" if source == src_id else "INGRESS"
        file_info = self._file_cache.get(file_id << 16 | line)
        f["file"] = file_info if file_info is not None else self._file_info(file_id, line)
        if trace_id:
            f["ip_trace_id"] = self._ip_trace_id(trace_id)
        if reason:
            f["drop_reason_desc"] = DROP_REASON_NAMES.get(reason, reason)
        if summary is not None:
            f["Summary"] = summary
        if reason in POLICY_DENY_REASONS and source and l4 is not None:
            # a policy drop names the denying policies too (the drop event has no cookie: the
            # resolver finds the decision from the endpoint, direction, identity and port)
            proto, policy_port = _policy_port(l4)
            if proto:
                ingress = f.get("traffic_direction") == "INGRESS"
                remote = src_label if ingress else dst_label
                match = self._policy_match(0, source, ingress, remote, proto, policy_port)
                if match is not None:
                    _attach_policies(f, match, "DROPPED", reason, ingress)
        return f

    # --- policy verdict (type 5) -----------------------------------------------------------------
    def _policy_verdict_header_len(self, n: int, cap_len: int, ext_len: int) -> int:
        """Pick the 32- or 40-byte policy-verdict layout; both carry version 1.

        A sample is ``header + ext + cap_len`` bytes plus 0-7 perf pad bytes, so
        ``n - cap_len - ext`` is 40..47 for the current layout and 32..39 for the old one: the two
        ranges do not overlap, so the length settles it. Anything else (a sample cut short, or
        longer than expected) is read with the current 40-byte layout when it is long enough.
        A fixed layout can be forced with ``policy_verdict_layout``.
        """
        if self._pv_layout is not None:
            return self._pv_layout
        rest = n - cap_len - ext_len
        if layouts.POLICY_VERDICT_OLD_LEN <= rest < layouts.POLICY_VERDICT_LEN:
            return layouts.POLICY_VERDICT_OLD_LEN
        if n - ext_len >= layouts.POLICY_VERDICT_LEN:
            return layouts.POLICY_VERDICT_LEN
        return layouts.POLICY_VERDICT_OLD_LEN

    def _policy_verdict(self, data: bytes, ts: str, uid: str) -> dict:
        n = len(data)
        if n < layouts.POLICY_VERDICT_OLD_LEN:
            raise MalformedSample(ERR_TRUNCATED)
        (_, sub_type, source, _, _, cap_len, _version, ext, remote, verdict, dport, proto, pflags, auth) = (
            _unpack_policy_verdict(data)
        )
        ext_len = self._ext_lengths.get(ext)
        if ext_len is None:
            raise MalformedSample(ERR_EXT_VERSION)
        header_len = self._policy_verdict_header_len(n, cap_len, ext_len)
        cookie = 0
        if header_len == layouts.POLICY_VERDICT_LEN:
            if n < header_len:
                raise MalformedSample(ERR_TRUNCATED)
            cookie = layouts.U32.unpack_from(data, layouts.POLICY_VERDICT_COOKIE_OFFSET)[0]
            l3 = pflags & PV_L3_DEV
        else:
            l3 = 0  # the old layout has no L3-device bit
        first = (FIRST_IPV6 if pflags & PV_IPV6 else FIRST_IPV4) if l3 else FIRST_ETHERNET
        pkt = self._payload(data, header_len, ext, cap_len, first, OVERLAY_NONE)

        ingress = (pflags & PV_DIR_MASK) == PV_DIR_INGRESS
        # the remote identity belongs to the source on ingress and to the destination on egress
        src_label, dst_label = (remote, 0) if ingress else (0, remote)
        cache = self._endpoint_cache
        hit = cache.get((pkt.ip_source, src_label))
        src_ep, src_id = hit if hit is not None else self._endpoint(pkt.ip_source, src_label)
        hit = cache.get((pkt.ip_destination, dst_label))
        dst_ep, dst_ep_id = hit if hit is not None else self._endpoint(pkt.ip_destination, dst_label)

        if verdict < 0:
            verdict_name = "DROPPED"
        elif verdict > 0:
            verdict_name = "REDIRECTED"
        elif pflags & PV_AUDITED:
            verdict_name = "AUDIT"
        else:
            verdict_name = "FORWARDED"

        f: dict[str, Any] = {"time": ts, "uuid": uid, "emitter": self._emitter, "verdict": verdict_name}
        if verdict < 0:
            f["drop_reason"] = -verdict
        if auth:
            f["auth_type"] = AUTH_TYPE_NAMES.get(auth, auth)
        if pkt.ethernet is not None:
            f["ethernet"] = pkt.ethernet
        if pkt.ip_source is not None:
            f["IP"] = self._ip_dict(pkt, pkt.ip_source, None, False)
        if pkt.l4 is not None:
            f["l4"] = pkt.l4
        event_type = self._event_type(MSG_POLICY_VERDICT, sub_type)
        self._tail(
            f,
            "L3_L4",
            src_ep,
            src_id,
            pkt.ip_source,
            dst_ep,
            dst_ep_id,
            pkt.ip_destination,
            event_type,
            pkt.source_port,
            pkt.destination_port,
        )
        f["traffic_direction"] = "INGRESS" if ingress else "EGRESS"
        match_type = (pflags & PV_MATCH_MASK) >> PV_MATCH_SHIFT
        if match_type:
            f["policy_match_type"] = match_type
        if verdict < 0:
            f["drop_reason_desc"] = DROP_REASON_NAMES.get(-verdict, -verdict)
        else:
            f["is_reply"] = False
        if pkt.summary is not None:
            f["Summary"] = pkt.summary

        match = self._policy_match(cookie, source, ingress, remote, proto, dport)
        if match is not None:
            _attach_policies(f, match, verdict_name, -verdict if verdict < 0 else 0, ingress)
        return f

    # --- debug capture (type 3) ------------------------------------------------------------------
    def _capture(self, data: bytes, ts: str, uid: str) -> dict:
        if len(data) < layouts.CAPTURE_LEN:
            raise MalformedSample(ERR_TRUNCATED)
        (_, point, _, _, _, cap_len, _version, ext, arg1, _arg2) = layouts.CAPTURE.unpack_from(data)
        pkt = self._payload(data, layouts.CAPTURE_LEN, ext, cap_len, FIRST_ETHERNET, OVERLAY_NONE)
        src_ep, src_id = self._endpoint(pkt.ip_source, 0)
        dst_ep, dst_ep_id = self._endpoint(pkt.ip_destination, 0)

        f: dict[str, Any] = {"time": ts, "uuid": uid, "emitter": self._emitter}
        if pkt.ethernet is not None:
            f["ethernet"] = pkt.ethernet
        if pkt.ip_source is not None:
            f["IP"] = self._ip_dict(pkt, pkt.ip_source, None, False)
        if pkt.l4 is not None:
            f["l4"] = pkt.l4
        event_type = self._event_type(MSG_CAPTURE, point)
        self._tail(
            f,
            "L3_L4",
            src_ep,
            src_id,
            pkt.ip_source,
            dst_ep,
            dst_ep_id,
            pkt.ip_destination,
            event_type,
            pkt.source_port,
            pkt.destination_port,
        )
        if point:
            f["debug_capture_point"] = DEBUG_CAPTURE_POINT_NAMES.get(point, point)
        if arg1 and point in CAPTURE_IFINDEX_POINTS:
            f["interface"] = self._interface(arg1)
        if point in CAPTURE_PROXY_POINTS:
            # Hubble applies a 32-bit network-to-host swap to arg1 here (spec doubt 6).
            port = socket.ntohl(arg1)
            if port:
                f["proxy_port"] = port
        if pkt.summary is not None:
            f["Summary"] = pkt.summary
        return f

    # --- trace-sock (type 7) ---------------------------------------------------------------------
    def _trace_sock(self, data: bytes, ts: str, uid: str) -> dict:
        if len(data) < layouts.TRACE_SOCK.size:
            raise MalformedSample(ERR_TRUNCATED)
        (_, point, l4_proto, sflags, dport, cookie, cgroup_id, dst_raw) = layouts.TRACE_SOCK.unpack_from(data)
        ipv6 = bool(sflags & TRACE_SOCK_FLAG_IPV6)
        dst_ip = ipv6_to_str(dst_raw) if ipv6 else socket.inet_ntoa(dst_raw[:4])
        pod_ip = self._resolver.endpoint_ip_by_cgroup(cgroup_id, ipv6)
        if pod_ip is None and self._skip_unknown_cgroups:
            raise SkippedSample
        src_ip = pod_ip
        sport = 0
        reverse = point in (SOCK_XLATE_PRE_REV, SOCK_XLATE_POST_REV)
        if reverse:
            src_ip, dst_ip = dst_ip, src_ip
        ip: dict | None = None
        if src_ip or dst_ip:
            ip = {}
            if src_ip:
                ip["source"] = src_ip
            if dst_ip:
                ip["destination"] = dst_ip
            ip["ipVersion"] = "IPv6" if ipv6 else "IPv4"
        l4_name = SOCK_L4_NAMES.get(l4_proto)
        l4: dict | None = None
        if l4_name is not None:
            ports = (
                {"source_port": dport, "destination_port": sport} if reverse else {"destination_port": dport}
            )
            l4 = {l4_name: {k: v for k, v in ports.items() if v}}
        src_ep, src_id = self._endpoint(src_ip, 0)
        dst_ep, dst_ep_id = self._endpoint(dst_ip, 0)

        f: dict[str, Any] = {"time": ts, "uuid": uid, "emitter": self._emitter}
        if point in (SOCK_XLATE_PRE_FWD, SOCK_XLATE_PRE_REV):
            f["verdict"] = "TRACED"
        elif point in (SOCK_XLATE_POST_FWD, SOCK_XLATE_POST_REV):
            f["verdict"] = "TRANSLATED"
        if ip is not None:
            f["IP"] = ip
        if l4 is not None:
            f["l4"] = l4
        sock_sport, sock_dport = (dport, 0) if reverse else (0, dport)
        event_type = self._event_type(MSG_TRACE_SOCK, point)
        self._tail(
            f, "SOCK", src_ep, src_id, src_ip, dst_ep, dst_ep_id, dst_ip, event_type, sock_sport, sock_dport
        )
        if point:
            f["sock_xlate_point"] = SOCK_XLATE_POINT_NAMES.get(point, point)
        if cookie:
            f["socket_cookie"] = str(cookie)
        if cgroup_id:
            f["cgroup_id"] = str(cgroup_id)
        f["Summary"] = l4_name or "Unknown"
        return f

    # --- debug message (type 2) ------------------------------------------------------------------
    def _debug(self, cpu: int, data: bytes) -> None:
        if len(data) < layouts.DEBUG_MSG.size:
            raise MalformedSample(ERR_TRUNCATED)
        _, sub_type, source, hash_, arg1, arg2, arg3 = layouts.DEBUG_MSG.unpack_from(data)
        event: dict = {}
        if sub_type:
            event["type"] = DEBUG_EVENT_TYPE_NAMES.get(sub_type, sub_type)
        if source:
            # Like Hubble's debug parser: ID, identity, cluster (from the cluster label),
            # namespace, labels and pod of a known endpoint; just the ID otherwise.
            info = self._resolver.endpoint_by_id(source)
            if info is not None:
                labels = sorted(info.labels)
                cluster = info.cluster_name or _cluster_from_labels(labels)
                event["source"] = _endpoint_dict(
                    source, info.identity, cluster, info.namespace, labels, info.pod_name, ()
                )
            else:
                event["source"] = {"ID": source}
        event["hash"] = hash_
        event["arg1"] = arg1
        event["arg2"] = arg2
        event["arg3"] = arg3
        event["message"] = debug_message(sub_type, arg1, arg2, arg3, self._resolver.interface_name)
        event["cpu"] = cpu
        self.debug_events_decoded += 1
        self._debug_sink(event)
