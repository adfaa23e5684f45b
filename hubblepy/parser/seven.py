"""Hubble's seven parser: L7 proxy access-log records to canonical L7 flow dicts.

Input: one access-log record as a dict with the JSON keys of Cilium's ``accesslog.LogRecord``
(``Type``, ``Timestamp``, ``ObservationPoint``, ``SourceEndpoint``/``DestinationEndpoint``
``{ID, IPv4, IPv6, Port, Identity, Labels}``, ``IPVersion``, ``Verdict``, ``TransportProtocol``,
``SourceAddress``/``DestinationAddress``, and one of ``HTTP``/``DNS``/``Kafka``/``L7``), plus our own
extension key ``hubblepy``: ``{proxy_port, allowed_by, denied_by, policy_log}`` (the proxy's policy
attribution; ``allowed_by``/``denied_by`` hold canonical ``flow.Policy`` dicts).

Output: the canonical flow dict Hubble builds for it (Cilium's pkg/hubble/parser/seven): ``Type`` L7,
``event_type`` 129, verdict, IP and L4 from the endpoints, both endpoints (identity, labels, pod,
workloads), DNS names and services through the same resolver as the L3/L4 parser, ``l7`` with the
HTTP/DNS/Kafka record, ``is_reply`` (true on responses: a response record's source is the
responder, as the proxies write it), ``traffic_direction`` from ``ObservationPoint``, the
``Summary`` text Hubble writes, and ``*_allowed_by``/``*_denied_by``/``policy_log`` from the
extension.

Like Hubble: ``time`` is the receive time (not the record's ``Timestamp``), the HTTP latency and
the response's trace context come from the request with the same ``X-Request-Id`` (kept in a
bounded cache), and header values are redacted by ``RedactOptions`` (Hubble's ``hubble-redact-*``
options; by default the values of Authorization, Cookie, Set-Cookie and Proxy-Authorization and
URL passwords are replaced by ``HUBBLE_REDACTED``).

Records reach the parser either as dicts (``SevenParser.decode``/``decode_batch``, what the lab's
access-log socket hands over) or as samples of message type 129 (``MSG_ACCESS_LOG``: the type byte
followed by the record's JSON, see ``access_log_sample``) through ``Parser.decode_batch``. A record
that does not parse is counted in the parser's ``parse_errors``/``error_counts`` and skipped.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from hubblepy.codec.timestamps import parse_rfc3339_ns
from hubblepy.parser.constants import CLUSTER_LABEL_KEY, MSG_ACCESS_LOG
from hubblepy.parser.errors import (
    ERR_INTERNAL,
    ERR_INVALID_TYPE,
    ERR_RECORD,
    ERR_TIMESTAMP,
    MalformedSample,
    SkippedSample,
)
from hubblepy.parser.ids import uuid4_strings

if TYPE_CHECKING:
    from hubblepy.parser.flows import Parser

REDACTED = "HUBBLE_REDACTED"
# Header values hidden by default (compared lower-case, like Hubble's header lists).
DEFAULT_REDACTED_HEADERS = frozenset({"authorization", "cookie", "set-cookie", "proxy-authorization"})
# Requests remembered for latency and trace context, by X-Request-Id (Hubble's default LRU size).
DEFAULT_REQUEST_CACHE_SIZE = 10_000

TYPE_REQUEST = "Request"
TYPE_RESPONSE = "Response"
TYPE_SAMPLE = "Sample"
_L7_TYPE_NAMES = {TYPE_REQUEST: "REQUEST", TYPE_RESPONSE: "RESPONSE", TYPE_SAMPLE: "SAMPLE"}
_VERDICT_NAMES = {
    "Forwarded": "FORWARDED",
    "Denied": "DROPPED",
    "Error": "ERROR",
    "Redirected": "REDIRECTED",
}
_DIRECTION_NAMES = {"Ingress": "INGRESS", "Egress": "EGRESS"}
_TRANSPORT_NAMES = {6: "TCP", 17: "UDP", 132: "SCTP"}  # accesslog TransportProtocol -> l4 layer
_IP_VERSION_IPV4 = 0
_IP_VERSION_IPV6 = 1
_DNS_SOURCE_PROXY = "proxy"
_NS_PER_MS = 1_000_000
_CACHE_LIMIT = 1 << 16  # entries per lookup cache before it is emptied
_TEMPLATE_LIMIT = 4096  # HTTP flow templates (a few per keep-alive connection) before they are emptied
_SEEN_ONCE: tuple = ()  # a template key seen once: no template yet
# rows (see SevenParser.decode_row): the header whose value is a row's hole, as LazyRecord.whole()
# writes it; a stand-in value for it no record holds (a string made at run time, compared by
# identity); the Unix ns before which a row's Timestamp text (accesslog.timestamp: years 1970 to
# 9999) always parses
_ROW_REQUEST_ID = "X-Request-Id"
_HOLE = "".join(("\x00", "row hole"))
_ROW_NS_LIMIT = 253_402_300_800 * 1_000_000_000
# the fields of Go's url.URL that its String() reads (the URL cache key)
_URL_KEYS = (
    "Scheme",
    "Opaque",
    "User",
    "Host",
    "Path",
    "RawPath",
    "OmitHost",
    "ForceQuery",
    "RawQuery",
    "Fragment",
    "RawFragment",
)
# what a header name is to the parser
_REQUEST_ID = "request-id"
_TRACEPARENT_HEADER = "traceparent"
_PLAIN = "plain"

# gopacket's DNSType.String() and DNSResponseCode.String() (they give the Summary and the
# qtypes/rrtypes strings); other numbers print as "Unknown".
DNS_TYPE_NAMES: dict[int, str] = {
    1: "A",
    2: "NS",
    3: "MD",
    4: "MF",
    5: "CNAME",
    6: "SOA",
    7: "MB",
    8: "MG",
    9: "MR",
    10: "NULL",
    11: "WKS",
    12: "PTR",
    13: "HINFO",
    14: "MINFO",
    15: "MX",
    16: "TXT",
    28: "AAAA",
    33: "SRV",
    41: "OPT",
    256: "URI",
}
DNS_RCODE_NAMES: dict[int, str] = {
    0: "No Error",
    1: "Format Error",
    2: "Server Failure",
    3: "Non-Existent Domain",
    4: "Not Implemented",
    5: "Query Refused",
    6: "Name Exists when it should not",
    7: "RR Set Exists when it should not",
    8: "RR Set that should exist does not",
    9: "Server Not Authoritative for zone",
    10: "Name not contained in zone",
    16: "Bad OPT Version",
    17: "Key not recognized",
    18: "Signature out of time window",
    19: "Bad TKEY Mode",
    20: "Duplicate key name",
    21: "Algorithm not supported",
    22: "Bad Truncation",
    23: "Bad/missing Server Cookie",
}


@dataclass(frozen=True, slots=True)
class RedactOptions:
    """Hubble's redaction options (``hubble-redact-enabled``, ``-http-urlquery``, ``-http-userinfo``,
    ``-kafka-apikey``, ``-http-headers-allow``, ``-http-headers-deny``).

    With ``enabled`` off nothing is redacted. With it on: a URL password is replaced when
    ``http_user_info`` is set; the query and fragment are removed when ``http_url_query`` is set;
    the Kafka API key is replaced when ``kafka_api_key`` is set; a header value is kept when its
    name is in the allow list, replaced when it is in the deny list, otherwise replaced when an
    allow list exists and kept when only a deny list exists; with neither list every header value
    is replaced. Only one of the two lists may be given.
    """

    enabled: bool = True
    http_url_query: bool = False
    http_user_info: bool = True
    kafka_api_key: bool = False
    http_headers_allow: frozenset[str] = frozenset()
    http_headers_deny: frozenset[str] = field(default=DEFAULT_REDACTED_HEADERS)

    def __post_init__(self) -> None:
        allow = frozenset(h.lower() for h in self.http_headers_allow)
        deny = frozenset(h.lower() for h in self.http_headers_deny)
        if allow and deny:
            raise ValueError("only one of the HTTP header allow and deny lists can be given")
        object.__setattr__(self, "http_headers_allow", allow)
        object.__setattr__(self, "http_headers_deny", deny)

    @classmethod
    def disabled(cls) -> RedactOptions:
        """Nothing redacted (Hubble's default when ``hubble-redact-enabled`` is off)."""
        return cls(enabled=False, http_user_info=False, http_headers_deny=frozenset())

    def header_value(self, key: str, value: str) -> str:
        """The value Hubble shows for one header value."""
        if not self.enabled:
            return value
        allow, deny = self.http_headers_allow, self.http_headers_deny
        if not allow and not deny:
            return REDACTED
        name = key.lower()
        if name in allow:
            return value
        if name in deny:
            return REDACTED
        return REDACTED if allow else value


def access_log_sample(record: Mapping[str, Any]) -> bytes:
    """A record as a type-129 sample for ``Parser.decode_batch``: the type byte, then its JSON."""
    return bytes((MSG_ACCESS_LOG,)) + orjson.dumps(record)


# --- small readers that reject wrong JSON types (a malformed record, not an internal error) ------
def _obj(value: Any) -> Mapping[str, Any]:
    if type(value) is dict:
        return value
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise MalformedSample(ERR_RECORD)
    return value


def _uint(value: Any) -> int:
    if value is None:
        return 0
    if type(value) is not int or value < 0:
        raise MalformedSample(ERR_RECORD)
    return value


def _int(value: Any) -> int:
    if value is None:
        return 0
    if type(value) is not int:
        raise MalformedSample(ERR_RECORD)
    return value


def _str(value: Any) -> str:
    if value is None:
        return ""
    if type(value) is not str:
        raise MalformedSample(ERR_RECORD)
    return value


def _strs(value: Any) -> list[str]:
    if value is None:
        return []
    if type(value) is not list:
        raise MalformedSample(ERR_RECORD)
    for v in value:
        if type(v) is not str:
            raise MalformedSample(ERR_RECORD)
    return value


def _uints(value: Any) -> list[int]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise MalformedSample(ERR_RECORD)
    return [_uint(v) for v in value]


# --- time -----------------------------------------------------------------------------------------
# --- Go text forms ------------------------------------------------------------------------------
class _Keep:
    """The bytes one URL part keeps as they are (Go's net/url shouldEscape), and a regex that finds
    the first character needing an escape (any non-ASCII character does)."""

    __slots__ = ("allowed", "needs_escape")

    def __init__(self, extra: bytes) -> None:
        self.allowed = frozenset(
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~" + extra
        )
        self.needs_escape = re.compile("[^" + re.escape(bytes(sorted(self.allowed)).decode()) + "]")


_KEEP_PATH = _Keep(b"$&+,/:;=@")
_KEEP_HOST = _Keep(b"!$&'()*+,;=:[]<>\"")
_KEEP_USER = _Keep(b"$&+,;=")
_KEEP_FRAGMENT = _Keep(b"$&+,/:;=?@!()*")
_VALID_RAW = _Keep(b"!$&'()*+,;=:@[]%/?")  # what a raw (already escaped) path or fragment may hold


def _escape(text: str, keep: _Keep) -> str:
    if keep.needs_escape.search(text) is None:
        return text
    allowed = keep.allowed
    return "".join(chr(b) if b in allowed else f"%{b:02X}" for b in text.encode())


def _unescape(text: str) -> str | None:
    out = bytearray()
    raw = text.encode()
    i = 0
    while i < len(raw):
        if raw[i] == 0x25:  # '%'
            pair = raw[i + 1 : i + 3]
            if len(pair) != 2 or not all(c in b"0123456789abcdefABCDEF" for c in pair):
                return None
            out.append(int(pair, 16))
            i += 3
        else:
            out.append(raw[i])
            i += 1
    try:
        return out.decode()
    except UnicodeDecodeError:
        return None


def _escaped_part(plain: str, raw: str, keep: _Keep) -> str:
    """Go's EscapedPath/EscapedFragment: the raw form when it validly encodes the plain one."""
    if raw and _VALID_RAW.needs_escape.search(raw) is None and _unescape(raw) == plain:
        return raw
    return _escape(plain, keep)


def go_quote(text: str) -> str:
    """Go's strconv.Quote (``%q``) for a valid UTF-8 string."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif 0x20 <= code < 0x7F or (code > 0x7F and ch.isprintable()):
            out.append(ch)
        elif ch in "\a\b\f\n\r\t\v":
            out.append(
                {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(ch, "\\v")
            )
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def _go_map(fields: Mapping[str, str]) -> str:
    """fmt's %s of a Go map[string]string: ``map[k1:v1 k2:v2]`` with sorted keys."""
    return "map[" + " ".join(f"{k}:{fields[k]}" for k in sorted(fields)) + "]"


def _user_info(user: Any) -> tuple[str, str | None] | None:
    """(username, password or None) of a URL's ``User``: ``"name"``/``"name:secret"`` or a dict."""
    if user is None:
        return None
    if isinstance(user, str):
        name, sep, password = user.partition(":")
        return name, password if sep else None
    user = _obj(user)
    name = _str(user.get("Username", user.get("username")))
    password = user.get("Password", user.get("password"))
    return name, None if password is None else _str(password)


def url_text(url: Any, redact: RedactOptions) -> str:
    """The URL text Hubble prints for a record's ``URL`` (Go's ``url.URL`` JSON or a string),
    with the password and, if asked, the query and fragment redacted."""
    if url is None:
        return ""
    user_redact = redact.enabled and redact.http_user_info
    query_redact = redact.enabled and redact.http_url_query
    if isinstance(url, str):
        return _redact_url_string(url, user_redact, query_redact)
    u = _obj(url)
    scheme, opaque, host = _str(u.get("Scheme")), _str(u.get("Opaque")), _str(u.get("Host"))
    path, raw_path = _str(u.get("Path")), _str(u.get("RawPath"))
    raw_query, fragment = _str(u.get("RawQuery")), _str(u.get("Fragment"))
    raw_fragment = _str(u.get("RawFragment"))
    force_query = bool(u.get("ForceQuery"))
    user = _user_info(u.get("User"))
    if user is not None and user[1] is not None and user_redact:
        user = (user[0], REDACTED)
    if query_redact:
        raw_query = fragment = raw_fragment = ""
    out = []
    if scheme:
        out.append(scheme + ":")
    if opaque:
        out.append(opaque)
    else:
        if (scheme or host or user is not None) and not (u.get("OmitHost") and not host and user is None):
            if host or path or user is not None:
                out.append("//")
            if user is not None:
                name, password = user
                text = _escape(name, _KEEP_USER)
                if password is not None:
                    text += ":" + _escape(password, _KEEP_USER)
                out.append(text + "@")
            if host:
                out.append(_escape(host, _KEEP_HOST))
        escaped_path = "*" if path == "*" and not raw_path else _escaped_part(path, raw_path, _KEEP_PATH)
        if escaped_path and escaped_path[0] != "/" and host:
            out.append("/")
        if not out and ":" in escaped_path.partition("/")[0]:
            out.append("./")
        out.append(escaped_path)
    if force_query or raw_query:
        out.append("?" + raw_query)
    if fragment:
        out.append("#" + _escaped_part(fragment, raw_fragment, _KEEP_FRAGMENT))
    return "".join(out)


def _redact_url_string(url: str, user_redact: bool, query_redact: bool) -> str:
    if query_redact:
        url = url.split("#", 1)[0].split("?", 1)[0]
    if user_redact:
        scheme, sep, rest = url.partition("://")
        if sep:
            authority, slash, tail = rest.partition("/")
            userinfo, at, hostport = authority.rpartition("@")
            if at and ":" in userinfo:
                name = userinfo.partition(":")[0]
                url = f"{scheme}://{name}:{REDACTED}@{hostport}{slash}{tail}"
    return url


_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?\Z")


def trace_id_from_traceparent(value: str) -> str:
    """The trace ID of a W3C ``traceparent`` value, or "" when it is not a valid one."""
    m = _TRACEPARENT.match(value)
    if m is None:
        return ""
    version, trace_id, span_id, _, rest = m.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return ""
    if trace_id == "0" * 32 or span_id == "0" * 16:
        return ""
    return trace_id


class Correlator:
    """The ``X-Request-Id`` table of Hubble's L7 parser: a request remembers its time and trace ID
    under its X-Request-Id (the oldest of ``size`` ids is forgotten first), a response takes them
    back (latency = response time - request time). :class:`SevenParser` correlates the records it
    reads with one; the HTTP proxy keeps one for the records it writes (calling it once per record,
    in order, as the node would), so the node need not."""

    def __init__(self, size: int = DEFAULT_REQUEST_CACHE_SIZE) -> None:
        self.size = size
        self._requests: dict[str, tuple[int, str]] = {}

    def request(self, ns: int, request_id: str, traceparent: str) -> str:
        """A request record's trace ID ("" for none); its latency is 0."""
        trace_id = trace_id_from_traceparent(traceparent) if traceparent else ""
        if request_id:
            requests = self._requests
            if request_id in requests:
                del requests[request_id]
            elif len(requests) >= self.size:
                del requests[next(iter(requests))]
            requests[request_id] = (ns, trace_id)
        return trace_id

    def response(self, ns: int, request_id: str) -> tuple[int, str]:
        """A response record's (latency ns, trace ID)."""
        if request_id:
            seen = self._requests.pop(request_id, None)
            if seen is not None:
                return max(0, ns - seen[0]), seen[1]
        return 0, ""


def _address(text: str) -> tuple[str, int]:
    """(IP, port) of ``ip:port`` / ``[ip6]:port``; ("", 0) when it is not one."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        return "", 0
    return host.strip("[]"), int(port)


def _policy(value: Any) -> dict:
    """A canonical ``flow.Policy`` dict (declaration order, defaults omitted) from the extension."""
    p = _obj(value)
    out: dict[str, Any] = {}
    for key in ("name", "namespace"):
        text = _str(p.get(key))
        if text:
            out[key] = text
    labels = _strs(p.get("labels"))
    if labels:
        out["labels"] = list(labels)
    revision = p.get("revision")
    number = _uint(int(revision) if type(revision) is str else revision)  # uint64: a JSON string
    if number:
        out["revision"] = str(number)
    kind = _str(p.get("kind"))
    if kind:
        out["kind"] = kind
    return out


class SevenParser:
    """Access-log records -> L7 flow dicts, sharing the L3/L4 ``Parser``'s resolver, caches,
    node name, emitter and error counters. Not thread-safe: one per reader (like the Parser)."""

    def __init__(
        self,
        parser: Parser,
        redact: RedactOptions | None = None,
        request_cache_size: int = DEFAULT_REQUEST_CACHE_SIZE,
    ) -> None:
        if request_cache_size < 1:
            raise ValueError("request_cache_size must be at least 1")
        self._parser = parser
        self._redact = redact if redact is not None else RedactOptions()
        self._correlator = Correlator(request_cache_size)
        # (IP, record ID, record identity) -> (endpoint dict, endpoint ID, the record's labels)
        self.endpoint_cache: dict[tuple, tuple[dict, int, list[str]]] = {}
        self._header_roles: dict[str, tuple[bool, str]] = {}
        self._special_plans: dict[tuple[str, ...], tuple[tuple[str, str], ...]] = {}  # _special_headers
        self._url_cache: dict[tuple, str] = {}
        # HTTP records' flow templates (see decode_record), valid for one resolver generation
        self._templates: dict[bytes, tuple] = {}
        self._keyed_kinds: dict[Any, str] = {}  # access-log template key -> its records' Type
        self._templates_generation: int | None = -1
        # rows (decode_row): access-log template key -> (its record, its HTTP object, _template parts,
        # {(latency?, trace?, headers?): shapes}); header set plans by (id, hole?), see _header_plan
        self._rows: dict[Hashable, tuple[dict, dict, tuple, dict[tuple[bool, bool, bool], tuple]]] = {}
        self._rows_generation: int | None = -1
        self._header_plans: dict[tuple[int, bool], tuple[dict, list[dict], int, str]] = {}
        self._event_type = parser._event_type(MSG_ACCESS_LOG, 0)

    @property
    def redact(self) -> RedactOptions:
        """The redaction options (fixed for the parser's life: header and URL results are cached)."""
        return self._redact

    # --- public API ------------------------------------------------------------------------------
    def decode(self, record: Any, now_ns: int) -> dict | None:
        """The flow dict of one record received at ``now_ns`` (Unix ns), or None (counted) if malformed."""
        flows = self.decode_batch((record,), now_ns)
        return flows[0] if flows else None

    def decode_batch(self, records: Iterable[Any], now_ns: int) -> list[dict]:
        """Flow dicts of records received at ``now_ns``; malformed ones are counted and skipped."""
        if not isinstance(records, Sequence):
            records = list(records)
        if not records:
            return []
        parser = self._parser
        parser._check_generation()
        ts = parser._timestamp(now_ns)
        uuids = uuid4_strings(len(records))
        out = []
        for i, record in enumerate(records):
            flow = self._guarded(record, ts, uuids[i])
            if flow is not None:
                out.append(flow)
        parser.flows_decoded += len(out)
        return out

    def decode_sample(self, data: bytes, ts: str, uid: str) -> dict:
        """Decoder of type-129 samples for ``Parser``'s dispatch: the type byte, then JSON."""
        try:
            return self.decode_record(orjson.loads(data[1:]), ts, uid)
        except (orjson.JSONDecodeError, TypeError, ValueError, OverflowError):
            raise MalformedSample(ERR_RECORD) from None

    # --- decoding --------------------------------------------------------------------------------
    def _guarded(self, record: Any, ts: str, uid: str) -> dict | None:
        parser = self._parser
        try:
            return self.decode_record(record, ts, uid)
        except SkippedSample:
            parser.skipped += 1
        except MalformedSample as exc:
            parser.parse_errors += 1
            parser.error_counts[exc.reason] += 1
        except (TypeError, ValueError, OverflowError):
            parser.parse_errors += 1
            parser.error_counts[ERR_RECORD] += 1
        except Exception as exc:  # never let one bad record stop the reader
            parser.parse_errors += 1
            parser.error_counts[ERR_INTERNAL] += 1
            parser.last_error = f"{type(exc).__name__}: {exc}"
        return None

    def correlate(self, record: Any) -> tuple[int, str] | None:
        """What an HTTP record's flow takes from the records before it: ``(latency ns, trace ID)``.

        Call it on every record in arrival order (it updates the X-Request-Id table as decoding
        does) and hand the result to :meth:`decode_record` later, in any order and any number of
        times: the flow is the one ``decode_batch`` would have made then. None for records that
        do not correlate (not HTTP, or malformed: decoding reports those).
        """
        try:
            if type(record) is not dict and not isinstance(record, Mapping):
                return None
            get = record.get
            http = get("HTTP")
            if http is None or get("DNS") is not None:
                return None
            kind = _str(get("Type"))
            time_ns = parse_rfc3339_ns(_str(get("Timestamp")))
            rec = _obj(http)
            (
                _str(rec.get("Method")),
                _str(rec.get("Protocol")),
                _int(rec.get("Code")),
                self._url(rec.get("URL")),
            )
            request_id, traceparent = self._special_headers(_obj(rec.get("Headers")))
        except (TypeError, ValueError, OverflowError, MalformedSample):
            return None
        return self._correlate(kind, time_ns, request_id, traceparent)

    def correlate_keyed(self, record: Any, key: Any) -> tuple[int, str] | None:
        """:meth:`correlate` of a record of an access-log template (``key``: records with the same
        key differ only in ``Timestamp`` and ``HTTP.Headers``, see
        :class:`~hubblepy.proxy.accesslog.RecordAssembler`): the rest is checked once per key."""
        kinds = self._keyed_kinds
        kind = kinds.get(key)
        if kind is None:
            result = self.correlate(record)
            if result is not None:
                if len(kinds) >= _TEMPLATE_LIMIT:
                    kinds.clear()
                kinds[key] = record["Type"]
            return result
        try:
            time_ns = parse_rfc3339_ns(_str(record.get("Timestamp")))
            request_id, traceparent = self._special_headers(_obj(record["HTTP"].get("Headers")))
        except (TypeError, ValueError, OverflowError, MalformedSample):
            return None
        return self._correlate(kind, time_ns, request_id, traceparent)

    def _correlate(self, kind: str, time_ns: int, request_id: str, traceparent: str) -> tuple[int, str]:
        if kind == TYPE_REQUEST:
            return 0, self._correlator.request(time_ns, request_id, traceparent)
        if kind == TYPE_RESPONSE:
            return self._correlator.response(time_ns, request_id)
        return 0, ""

    def _special_headers(self, headers: Mapping[str, Any]) -> tuple[str, str]:
        """(X-Request-Id, traceparent): the first value of each, in sorted header-name order.

        Every value is checked (a bad one fails here as in decoding). Which names are special, in
        sorted order, is worked out once per tuple of names (a proxy's records repeat a few)."""
        names = tuple(headers)
        plan = self._special_plans.get(names)
        if plan is None:
            plan = self._special_plan(names)
        for values in headers.values():
            if type(values) is not str:
                _strs(values)
        request_id = traceparent = ""
        for name, special in plan:
            values = headers[name]
            for value in [values] if type(values) is str else values:
                if special is _REQUEST_ID:
                    if not request_id:
                        request_id = value
                elif not traceparent:
                    traceparent = value
        return request_id, traceparent

    def _special_plan(self, names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
        """The (name, role) of the special headers among ``names``, in sorted name order."""
        header_roles = self._header_roles
        plan = []
        for name in sorted(names):
            role = header_roles.get(name)
            if role is None:
                role = self._header_role(name)
            if role[1] is not _PLAIN:
                plan.append((name, role[1]))
        if len(self._special_plans) >= _CACHE_LIMIT:
            self._special_plans.clear()
        found = self._special_plans[names] = tuple(plan)
        return found

    def decode_record(
        self, record: Any, ts: str, uid: str, correlation: tuple[int, str] | None = None
    ) -> dict:
        """One record's flow dict with the given time and UUID; raises ``MalformedSample``.

        ``correlation``: what :meth:`correlate` returned for the record when it arrived (then the
        request table is left alone); None correlates now.

        HTTP records that differ from one seen before only in ``Timestamp`` and ``HTTP.Headers`` (a
        connection's requests and responses) are built from that record's flow: the key is the JSON
        of every other field the flow depends on, the template is dropped when the resolver's state
        changes (as the endpoint cache is)."""
        if type(record) is dict:
            http = record.get("HTTP")
            if type(http) is dict and record.get("DNS") is None:
                try:
                    get, http_get = record.get, http.get
                    key = orjson.dumps(  # a list: orjson writes it faster than a tuple
                        [
                            get("Type"),
                            get("Verdict"),
                            get("ObservationPoint"),
                            get("IPVersion"),
                            get("TransportProtocol"),
                            get("SourceAddress"),
                            get("DestinationAddress"),
                            get("SourceEndpoint"),
                            get("DestinationEndpoint"),
                            get("hubblepy"),
                            http_get("Method"),
                            http_get("Protocol"),
                            http_get("Code"),
                            http_get("URL"),
                        ]
                    )
                except (TypeError, orjson.JSONEncodeError):
                    key = None
                if key is not None:
                    return self._decode_http(record, http, key, ts, uid, correlation)
        return self._decode_record(record, ts, uid, correlation)

    def _decode_http(
        self,
        record: dict,
        http: dict,
        key: bytes,
        ts: str,
        uid: str,
        correlation: tuple[int, str] | None,
    ) -> dict:
        """:meth:`_decode_record` of an HTTP record from the template of its ``key``, made the second
        time the key is seen (a key seen once, e.g. a connection with one request, costs no template)."""
        templates = self._templates
        generation = self._parser._generation
        if generation != self._templates_generation or len(templates) >= _TEMPLATE_LIMIT:
            templates.clear()
            self._templates_generation = generation
        template = templates.get(key)
        if template is None or template is _SEEN_ONCE:
            flow = self._decode_record(record, ts, uid, correlation)
            templates[key] = (
                _SEEN_ONCE
                if template is None
                else _template(flow, _str(record.get("Type")), _int(http.get("Code")))
            )
            return flow
        kind, pre, l7_type, http_head, mid, summary, post = template
        try:
            time_ns = parse_rfc3339_ns(_str(record.get("Timestamp")))
        except (ValueError, OverflowError):
            raise MalformedSample(ERR_TIMESTAMP) from None
        header_list, request_id, traceparent = self._headers(_obj(http.get("Headers")))
        if correlation is None:
            latency, trace_id = self._correlate(kind, time_ns, request_id, traceparent)
        else:
            latency, trace_id = correlation
        http_flow = dict(http_head)
        if header_list:
            http_flow["headers"] = header_list
        l7: dict[str, Any] = {} if l7_type is None else {"type": l7_type}
        if latency:
            l7["latency_ns"] = str(latency)
        l7["http"] = http_flow
        f: dict[str, Any] = {"time": ts, "uuid": uid}
        f.update(pre)
        f["l7"] = l7
        f.update(mid)
        if trace_id:
            f["trace_context"] = {"parent": {"trace_id": trace_id}}
        if type(summary) is tuple:
            f["Summary"] = f"{summary[0]}{latency // _NS_PER_MS}{summary[1]}"
        elif summary:
            f["Summary"] = summary
        f.update(post)
        return f

    def decode_row(
        self, record: RowRecord, key: Hashable, ts: str, uid: str, correlation: tuple[int, str] | None
    ) -> dict:
        """:meth:`decode_row_shaped`'s flow."""
        return self.decode_row_shaped(record, key, ts, uid, correlation)[0]

    def decode_row_shaped(
        self, record: RowRecord, key: Hashable, ts: str, uid: str, correlation: tuple[int, str] | None
    ) -> tuple[dict, tuple[dict, dict, dict] | None]:
        """:meth:`decode_record` of ``record.whole()`` (an access-log row, see :class:`RowRecord`),
        built from its template key's flow when it can be; raises ``MalformedSample``.

        ``key``: the row's access-log template key (rows with the same key have the same ``base``
        and ``http`` objects and differ only in ``Timestamp`` and ``HTTP.Headers``). With the
        writer's ``correlation``, a row's flow depends on its own record only through its headers
        (the flow's ``time`` is ``ts``, the receive time; the ``Timestamp`` is only parsed, and
        :func:`~hubblepy.proxy.accesslog.timestamp`'s text always parses for ``ns`` in
        [0, year 10000)). So the first row of a key (per resolver generation) is decoded in full
        and its flow kept as the key's template (:func:`_template`); the others copy it and set
        ``time``, ``uuid``, ``l7.latency_ns``, ``l7.http.headers`` (from the header set, worked out
        once per set: :meth:`_header_plan`), ``trace_context`` and a response's ``Summary``
        (latency in ms). Anything else (no correlation, a time outside that range, another record
        or HTTP object under the key, a header set that does not decode) is decoded in full.

        Returns the flow and the shape it was copied from (:func:`_row_shape`; None for a flow
        decoded in full): :mod:`hubblepy.observer.l7wire` builds its bytes from the shape's."""
        parser_generation = self._parser._generation
        rows = self._rows
        if parser_generation != self._rows_generation or len(rows) >= _TEMPLATE_LIMIT:
            rows.clear()
            self._rows_generation = parser_generation
        ns = record.ns
        found = rows.get(key)
        if (
            found is None
            or found[0] is not record.base
            or found[1] is not record.http
            or correlation is None
            or type(ns) is not int
            or not 0 <= ns < _ROW_NS_LIMIT
        ):
            flow = self.decode_record(record.whole(), ts, uid, correlation)
            base, http = record.base, record.http
            if (
                correlation is not None
                and type(ns) is int
                and 0 <= ns < _ROW_NS_LIMIT
                and type(base) is dict
                and type(http) is dict
                and base.get("DNS") is None  # decoded as HTTP (what _template reads)
            ):
                parts = _template(flow, _str(base.get("Type")), _int(http.get("Code")))
                rows[key] = (base, http, parts, {})
            return flow, None
        request_id = record.request_id
        headers = record.headers
        plan = self._header_plans.get((id(headers), request_id is not None))
        if plan is None or plan[0] is not headers:
            try:
                plan = self._header_plan(headers, request_id is not None)
            except (MalformedSample, TypeError, ValueError):
                return self.decode_record(record.whole(), ts, uid, correlation), None
        _, header_list, hole, name = plan
        if hole >= 0:
            header_list = header_list.copy()
            header_list[hole] = {"key": name, "value": request_id} if request_id else {"key": name}
        elif header_list:
            header_list = header_list.copy()
        latency, trace_id = correlation
        parts, shapes = found[2], found[3]
        variant = (bool(latency), bool(trace_id), bool(header_list))
        shape = shapes.get(variant)
        if shape is None:
            shape = shapes[variant] = _row_shape(parts, *variant)
        f_shape, l7_shape, http_shape = shape
        http_flow = http_shape.copy()
        if header_list:
            http_flow["headers"] = header_list
        l7 = l7_shape.copy()
        if latency:
            l7["latency_ns"] = str(latency)
        l7["http"] = http_flow
        f = f_shape.copy()
        f["time"] = ts
        f["uuid"] = uid
        f["l7"] = l7
        if trace_id:
            f["trace_context"] = {"parent": {"trace_id": trace_id}}
        summary = parts[5]
        if type(summary) is tuple:
            f["Summary"] = f"{summary[0]}{latency // _NS_PER_MS}{summary[1]}"
        return f, shape

    def _header_plan(self, headers: dict[str, list[str]], hole: bool) -> tuple[dict, list[dict], int, str]:
        """(``headers``, the flow's header list of a row with this header set, the position of the
        X-Request-Id hole's entry in it or -1, that entry's key): :meth:`_headers` of the headers
        ``LazyRecord.whole()`` makes, with a stand-in for the hole's value (found by identity; a
        redacted hole shows no value, so has no position)."""
        mapped = {name: list(values) for name, values in headers.items()}
        if hole:
            mapped[_ROW_REQUEST_ID] = [_HOLE]
        header_list = self._headers(mapped)[0]
        at, name = -1, ""
        for i, entry in enumerate(header_list):
            if entry.get("value") is _HOLE:
                at, name = i, entry["key"]
        plans = self._header_plans
        if len(plans) >= _CACHE_LIMIT:
            plans.clear()
        plan = plans[(id(headers), hole)] = (headers, header_list, at, name)
        return plan

    def _decode_record(
        self, record: Any, ts: str, uid: str, correlation: tuple[int, str] | None = None
    ) -> dict:
        """:meth:`decode_record`, field by field."""
        if type(record) is not dict and not isinstance(record, Mapping):
            raise MalformedSample(ERR_INVALID_TYPE)
        get = record.get
        kind = _str(get("Type"))
        try:
            time_ns = parse_rfc3339_ns(_str(get("Timestamp")))
        except (ValueError, OverflowError):
            raise MalformedSample(ERR_TIMESTAMP) from None
        src_rec, dst_rec = _obj(get("SourceEndpoint")), _obj(get("DestinationEndpoint"))
        # "ip:port" addresses stand in for what the endpoints lack (read only when needed)
        src_address = _str(get("SourceAddress"))
        dst_address = _str(get("DestinationAddress"))
        version = _uint(get("IPVersion"))
        ip: dict[str, Any] | None = None
        src_ip = dst_ip = ""
        if version in (_IP_VERSION_IPV4, _IP_VERSION_IPV6):
            key = "IPv4" if version == _IP_VERSION_IPV4 else "IPv6"
            src_ip = _str(src_rec.get(key)) or _address(src_address)[0]
            dst_ip = _str(dst_rec.get(key)) or _address(dst_address)[0]
            ip = {}
            if src_ip:
                ip["source"] = src_ip
            if dst_ip:
                ip["destination"] = dst_ip
            ip["ipVersion"] = key
        l4: dict | None = None
        sport = dport = 0
        l4_name = _TRANSPORT_NAMES.get(_uint(get("TransportProtocol")))
        if l4_name is not None:
            sport = _uint(src_rec.get("Port")) or _address(src_address)[1]
            dport = _uint(dst_rec.get("Port")) or _address(dst_address)[1]
            ports = {}
            if sport:
                ports["source_port"] = sport
            if dport:
                ports["destination_port"] = dport
            l4 = {l4_name: ports}
        src_ep, src_id = self._endpoint(src_rec, src_ip)
        dst_ep, dst_id = self._endpoint(dst_rec, dst_ip)

        l7: dict[str, Any] = {}
        l7_type = _L7_TYPE_NAMES.get(kind)
        if l7_type is not None:
            l7["type"] = l7_type
        is_response = kind == TYPE_RESPONSE
        trace_id = ""
        summary = ""
        http, dns, kafka = get("HTTP"), get("DNS"), get("Kafka")
        if dns is not None:
            dns_flow, summary = self._dns(kind, _obj(dns))
            l7["dns"] = dns_flow
        elif http is not None:
            http_flow, summary, latency, trace_id = self._http(kind, _obj(http), time_ns, correlation)
            if latency:
                l7["latency_ns"] = str(latency)
            l7["http"] = http_flow
        elif kafka is not None:
            kafka_flow, summary = self._kafka(l7_type, _obj(kafka))
            l7["kafka"] = kafka_flow
        elif get("L7") is not None:
            generic = _obj(get("L7"))
            fields = _obj(generic.get("Fields"))
            summary = (
                f"{_str(generic.get('Proto'))} Fields: {_go_map({k: _str(v) for k, v in fields.items()})}"
            )

        parser = self._parser
        f: dict[str, Any] = {"time": ts, "uuid": uid, "emitter": parser._emitter}
        verdict = _VERDICT_NAMES.get(_str(get("Verdict")))
        if verdict is not None:
            f["verdict"] = verdict
        if ip is not None:
            f["IP"] = ip
        if l4 is not None:
            f["l4"] = l4
        parser._tail(
            f,
            "L7",
            src_ep,
            src_id,
            src_ip or None,
            dst_ep,
            dst_id,
            dst_ip or None,
            self._event_type,
            sport,
            dport,
            is_response,
            l7,
        )
        direction = _DIRECTION_NAMES.get(_str(get("ObservationPoint")))
        if direction is not None:
            f["traffic_direction"] = direction
        f["is_reply"] = is_response
        ext = _obj(get("hubblepy"))
        proxy_port = _uint(ext.get("proxy_port"))
        if proxy_port:
            f["proxy_port"] = proxy_port
        if trace_id:
            f["trace_context"] = {"parent": {"trace_id": trace_id}}
        if summary:
            f["Summary"] = summary
        if ext:
            self._attribution(f, ext, verdict, direction == "EGRESS")
        return f

    def _endpoint(self, rec: Mapping[str, Any], ip: str) -> tuple[dict, int]:
        """(Endpoint dict, endpoint ID) from the record's endpoint and the node's state for ``ip``.

        The record's ID, identity and labels win (the proxy's view, as in Hubble); the node's
        endpoint/ipcache state gives namespace, pod, cluster and the workloads of a local endpoint,
        and fills in an ID, identity or labels the record does not carry.
        """
        ep_id = _uint(rec.get("ID"))
        identity = _uint(rec.get("Identity"))
        labels = _strs(rec.get("Labels"))
        key = (ip, ep_id, identity)
        hit = self.endpoint_cache.get(key)
        if hit is not None and hit[2] == labels:  # compared, not hashed: records are fresh objects
            return hit[0], hit[1]
        parser = self._parser
        info = parser._resolver.endpoint_by_ip(ip) if ip else None
        local = info is not None and info.id != 0
        if info is not None:
            if not ep_id and local:
                ep_id = info.id
            if not identity:
                identity = info.identity
        if labels:
            sorted_labels = sorted(labels)
        elif info is not None and local:
            sorted_labels = sorted(info.labels)
        else:
            sorted_labels = parser._identity_labels(identity)
        d: dict[str, Any] = {}
        if ep_id:
            d["ID"] = ep_id
        if identity:
            d["identity"] = identity
        cluster = info.cluster_name if info is not None else ""
        if not cluster:
            for label in sorted_labels:
                _, _, key_value = label.partition(":")
                if key_value.startswith(CLUSTER_LABEL_KEY):
                    cluster = key_value[len(CLUSTER_LABEL_KEY) :]
                    break
        if cluster:
            d["cluster_name"] = cluster
        if info is not None and info.namespace:
            d["namespace"] = info.namespace
        if sorted_labels:
            d["labels"] = sorted_labels
        if info is not None and info.pod_name:
            d["pod_name"] = info.pod_name
        if info is not None and local and info.workloads:
            d["workloads"] = [
                {k: v for k, v in (("name", name), ("kind", kind)) if v} for name, kind in info.workloads
            ]
        if len(self.endpoint_cache) >= _CACHE_LIMIT:
            self.endpoint_cache.clear()
        self.endpoint_cache[key] = (d, ep_id, list(labels))
        return d, ep_id

    def _http(
        self, kind: str, rec: Mapping[str, Any], time_ns: int, correlation: tuple[int, str] | None = None
    ) -> tuple[dict, str, int, str]:
        """(flow.HTTP dict, Summary, latency ns, trace ID) of an HTTP record."""
        method, protocol = _str(rec.get("Method")), _str(rec.get("Protocol"))
        code = _int(rec.get("Code"))
        url = self._url(rec.get("URL"))
        header_list, request_id, traceparent = self._headers(_obj(rec.get("Headers")))
        out: dict[str, Any] = {}
        if kind != TYPE_REQUEST and code:
            out["code"] = code & 0xFFFFFFFF
        if method:
            out["method"] = method
        if url:
            out["url"] = url
        if protocol:
            out["protocol"] = protocol
        if header_list:
            out["headers"] = header_list
        if correlation is None:
            latency, trace_id = self._correlate(kind, time_ns, request_id, traceparent)
        else:
            latency, trace_id = correlation
        summary = ""
        if kind == TYPE_REQUEST:
            summary = f"{protocol} {method} {url}"
        elif kind == TYPE_RESPONSE:
            summary = f"{protocol} {code} {latency // _NS_PER_MS}ms ({method} {url})"
        return out, summary, latency, trace_id

    def _headers(self, headers: Mapping[str, Any]) -> tuple[list[dict], str, str]:
        """(flow headers in sorted name order, X-Request-Id, traceparent) of a record's ``Headers``."""
        header_list = []
        request_id = traceparent = ""
        header_roles = self._header_roles
        for name in sorted(headers):
            values = headers[name]
            if type(values) is str:
                values = [values]
            role = header_roles.get(name)
            if role is None:
                role = self._header_role(name)
            redact, special = role
            for value in _strs(values):
                # the request ID and traceparent are read before redaction, as Hubble does
                if special is _REQUEST_ID and not request_id:
                    request_id = value
                elif special is _TRACEPARENT_HEADER and not traceparent:
                    traceparent = value
                shown = REDACTED if redact else value
                header_list.append({"key": name, "value": shown} if shown else {"key": name})
        return header_list, request_id, traceparent

    def _header_role(self, name: str) -> tuple[bool, str]:
        """(value redacted?, _REQUEST_ID / _TRACEPARENT_HEADER / _PLAIN) for a header name."""
        lower = name.lower()
        redact = self._redact.header_value(name, "value") == REDACTED
        if lower == "x-request-id":
            role = (redact, _REQUEST_ID)
        elif lower == "traceparent":
            role = (redact, _TRACEPARENT_HEADER)
        else:
            role = (redact, _PLAIN)
        if len(self._header_roles) >= _CACHE_LIMIT:
            self._header_roles.clear()
        self._header_roles[name] = role
        return role

    def _url(self, value: Any) -> str:
        """``url_text`` of a record's URL, cached for Go ``url.URL`` objects by their fields."""
        if type(value) is not dict:
            return url_text(value, self._redact)
        key = tuple(map(value.get, _URL_KEYS))
        try:
            text = self._url_cache.get(key)
        except TypeError:  # an unhashable field (e.g. a User object): not cached
            return url_text(value, self._redact)
        if text is None:
            text = url_text(value, self._redact)
            if len(self._url_cache) >= _CACHE_LIMIT:
                self._url_cache.clear()
            self._url_cache[key] = text
        return text

    def _dns(self, kind: str, rec: Mapping[str, Any]) -> tuple[dict, str]:
        """(flow.DNS dict, Summary) of a DNS record."""
        query = _str(rec.get("Query"))
        source = _str(rec.get("ObservationSource"))
        qtypes = [DNS_TYPE_NAMES.get(t, "Unknown") for t in _uints(rec.get("QTypes"))]
        qtype_text = ",".join(qtypes)
        out: dict[str, Any] = {}
        if query:
            out["query"] = query
        if kind == TYPE_REQUEST:
            if source:
                out["observation_source"] = source
            if qtypes:
                out["qtypes"] = qtypes
            return out, f"DNS Query {query} {qtype_text}"
        ips = _strs(rec.get("IPs"))
        ttl = _uint(rec.get("TTL"))
        cnames = _strs(rec.get("CNAMEs"))
        rcode = _int(rec.get("RCode"))
        rrtypes = [DNS_TYPE_NAMES.get(t, "Unknown") for t in _uints(rec.get("AnswerTypes"))]
        if ips:
            out["ips"] = list(ips)
        if ttl:
            out["ttl"] = ttl
        if cnames:
            out["cnames"] = list(cnames)
        if source:
            out["observation_source"] = source
        if rcode:
            out["rcode"] = rcode & 0xFFFFFFFF
        if qtypes:
            out["qtypes"] = qtypes
        if rrtypes:
            out["rrtypes"] = rrtypes
        summary = ""
        if kind == TYPE_RESPONSE:
            rcode8 = rcode & 0xFF  # gopacket's DNSResponseCode is a byte
            if rcode8:
                answer = "RCode: " + DNS_RCODE_NAMES.get(rcode8, "Unknown")
            else:
                parts = []
                if ips:
                    parts.append(go_quote(",".join(ips)))
                if cnames:
                    parts.append("CNAMEs: " + go_quote(",".join(cnames)))
                answer = " ".join(parts)
            seen_by = "Proxy" if source == _DNS_SOURCE_PROXY else "Query"
            summary = f"DNS Answer {answer} TTL: {ttl} ({seen_by} {query} {qtype_text})"
        return out, summary

    def _kafka(self, l7_type: str | None, rec: Mapping[str, Any]) -> tuple[dict, str]:
        """(flow.Kafka dict, Summary) of a Kafka record."""
        api_key = _str(rec.get("APIKey"))
        if self._redact.enabled and self._redact.kafka_api_key:
            api_key = REDACTED
        api_version = _int(rec.get("APIVersion"))
        correlation_id = _int(rec.get("CorrelationID"))
        topic = _str(_obj(rec.get("Topic")).get("Topic"))
        error_code = _int(rec.get("ErrorCode")) if l7_type != "REQUEST" else 0
        out: dict[str, Any] = {}
        if error_code:
            out["error_code"] = error_code
        if api_version:
            out["api_version"] = api_version
        if api_key:
            out["api_key"] = api_key
        if correlation_id:
            out["correlation_id"] = correlation_id
        if topic:
            out["topic"] = topic
        head = f"{api_key} correlation id {correlation_id} topic '{topic}'"
        if l7_type == "REQUEST":
            return out, f"Kafka request {head}"
        return out, f"Kafka response {head} return code {error_code}"

    def _attribution(self, f: dict, ext: Mapping[str, Any], verdict: str | None, egress: bool) -> None:
        """Policy lists and log from the proxy's extension (allowed on FORWARDED, denied on DROPPED)."""
        allowed = [_policy(p) for p in _list(ext.get("allowed_by"))]
        denied = [_policy(p) for p in _list(ext.get("denied_by"))]
        log = _strs(ext.get("policy_log"))
        if allowed and verdict in ("FORWARDED", "REDIRECTED"):
            f["egress_allowed_by" if egress else "ingress_allowed_by"] = allowed
        if denied and verdict == "DROPPED":
            f["egress_denied_by" if egress else "ingress_denied_by"] = denied
        if log:
            f["policy_log"] = list(log)


class RowRecord(Protocol):
    """What :meth:`SevenParser.decode_row` reads of an access-log row
    (:class:`~hubblepy.proxy.accesslog.LazyRecord`): its template's record and ``HTTP`` object, its
    time (Unix ns), its header set and the value of the set's X-Request-Id hole (None: no hole). The
    objects are shared by the rows of a template and never modified."""

    base: dict[str, Any]
    http: dict[str, Any]
    ns: int
    headers: dict[str, list[str]]
    request_id: str | None

    def whole(self) -> dict[str, Any]: ...


# the fields _decode_record writes after trace_context and Summary (SevenParser._attribution)
_AFTER_SUMMARY = frozenset(
    ("egress_allowed_by", "ingress_allowed_by", "egress_denied_by", "ingress_denied_by", "policy_log")
)


def _template(f: dict, kind: str, code: int) -> tuple:
    """The parts of an HTTP record's flow that do not depend on its ``Timestamp`` and headers:
    (Type, fields before ``l7``, l7 type, the HTTP fields before ``headers``, fields from ``l7`` to
    ``trace_context``, the Summary (text, or the response's text around its latency in ms), fields
    after the Summary). Sub-dicts are shared, as flows share them (flow dicts are read-only)."""
    pre: list[tuple[str, Any]] = []
    mid: list[tuple[str, Any]] = []
    post: list[tuple[str, Any]] = []
    part = pre
    for name, value in f.items():
        if name in ("time", "uuid", "trace_context"):
            continue
        if name == "l7":
            part = mid
            continue
        if name == "Summary":
            part = post
            continue
        if name in _AFTER_SUMMARY:  # a flow without a Summary: these still follow trace_context
            part = post
        part.append((name, value))
    l7 = f["l7"]
    http = l7["http"]
    head = {k: v for k, v in http.items() if k != "headers"}
    summary: str | tuple[str, str] = ""
    if kind == TYPE_REQUEST:
        summary = f["Summary"]
    elif kind == TYPE_RESPONSE:
        protocol, method, url = head.get("protocol", ""), head.get("method", ""), head.get("url", "")
        summary = (f"{protocol} {code} ", f"ms ({method} {url})")
    return (kind, tuple(pre), l7.get("type"), head, tuple(mid), summary, tuple(post))


def _row_shape(parts: tuple, latency: bool, trace: bool, headers: bool) -> tuple[dict, dict, dict]:
    """The flow, ``l7`` and ``l7.http`` dicts of a row template's flows (``parts``: :func:`_template`)
    with every key in its place and None for the values each row sets: with or without
    ``l7.latency_ns``, ``trace_context`` and ``l7.http.headers`` (the keys a row may lack)."""
    _, pre, l7_type, http_head, mid, summary, post = parts
    http_flow = dict(http_head)
    if headers:
        http_flow["headers"] = None
    l7: dict[str, Any] = {} if l7_type is None else {"type": l7_type}
    if latency:
        l7["latency_ns"] = None
    l7["http"] = None
    f: dict[str, Any] = {"time": None, "uuid": None}
    f.update(pre)
    f["l7"] = None
    f.update(mid)
    if trace:
        f["trace_context"] = None
    if type(summary) is tuple:
        f["Summary"] = None
    elif summary:
        f["Summary"] = summary
    f.update(post)
    return f, l7, http_flow


def _list(value: Any) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise MalformedSample(ERR_RECORD)
    return value
