"""DNS messages for the DNS proxy: queries and answers parsed with dnspython, memoized by their bytes.

A proxy sees the same few messages again and again (the same names asked by the same resolvers), and
dnspython takes tens of microseconds per message (a few hundred for an answer), so:

* each parse is kept by the message's bytes after the 16-bit ID (:class:`WireCache`): a repeated
  query costs a dictionary lookup, and the REFUSED answer to a query is kept with it;
* the common shapes are read by a short reader of our own (:func:`fast_query`, :func:`fast_answer`):
  one question, A/AAAA/CNAME records of class IN, no authority records, at most an OPT record
  without options, names of plain labels (letters, digits, ``-``, ``_``) with backward compression
  pointers. It gives exactly what dnspython gives for those (``nox -s fuzz -- dnsquery`` checks it on
  every input it accepts) and hands anything else to dnspython (:func:`dnspython_query`,
  :func:`dnspython_answer`), which also validates it: what dnspython refuses, and what is not a
  plain one-question query, is :class:`Malformed`.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import dns.exception
import dns.flags
import dns.ipv4
import dns.ipv6
import dns.message
import dns.name
import dns.opcode
import dns.rcode

MAX_UDP_QUERY = 1232  # bytes; a bigger query datagram is "oversized" (DNS flag day 2020 safe size)
MAX_TCP_MESSAGE = 16384  # bytes; a query over TCP claiming more is oversized (the connection closes)
HEADER = struct.Struct("!HHHHHH")
QR = 0x8000
RCODE_NOERROR = 0
RCODE_SERVFAIL = 2
RCODE_REFUSED = 5
TYPE_A = 1
TYPE_AAAA = 28
TYPE_CNAME = 5


class Malformed(ValueError):
    """Not a DNS message the proxy can handle (one-line reason)."""


class Query(NamedTuple):
    """What the proxy needs of a query."""

    name: str  # lower case, with the trailing dot (the question's name as asked, for the log)
    qtypes: tuple[int, ...]


class Answer(NamedTuple):
    """What the proxy needs of an answer."""

    name: str  # the question's name, lower case with the trailing dot
    rcode: int
    ips: tuple[str, ...]  # A and AAAA records of the answer section (after CNAMEs), in order
    ttl: int  # the lowest TTL of those records (0 without any)
    cnames: tuple[str, ...]  # CNAME targets with the trailing dot
    answer_types: tuple[int, ...]  # the type of each answer record


def error_reply(wire: bytes, rcode: int) -> bytes:
    """The answer to a (valid) query with ``rcode`` and no records: same ID, question and EDNS."""
    msg = dns.message.from_wire(wire)
    reply = dns.message.make_response(msg)
    reply.set_rcode(dns.rcode.Rcode.make(rcode))
    reply.flags &= ~dns.flags.AA
    return reply.to_wire()


class _Fallback(Exception):
    """Not a shape the short reader handles: dnspython decides."""


_PLAIN_LABEL = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
_RR = struct.Struct("!HHIH")
_QUESTION = struct.Struct("!HH")
TYPE_OPT = 41
MAX_POINTER_HOPS = 16
MAX_NAME_WIRE = 255


def _read_name(wire: bytes, pos: int, limit: int) -> tuple[str, int]:
    """(lower-case name with the final dot, position after it), as dnspython reads it; _Fallback when
    the name is not plain (escapes, bad pointers, bad label types: dnspython decides)."""
    labels: list[bytes] = []
    size = 1
    biggest = start = pos
    after = -1
    hops = 0
    while True:
        if pos >= limit:
            raise _Fallback
        count = wire[pos]
        if count == 0:
            pos += 1
            break
        if count < 64:
            end = pos + 1 + count
            if end > limit:
                raise _Fallback
            label = wire[pos + 1 : end]
            if not _PLAIN_LABEL.issuperset(label):
                raise _Fallback
            labels.append(label)
            size += count + 1
            pos = end
        elif count >= 192:
            if pos + 2 > limit:
                raise _Fallback
            target = ((count & 0x3F) << 8) | wire[pos + 1]
            if target >= biggest or hops >= MAX_POINTER_HOPS:
                raise _Fallback
            biggest = target
            hops += 1
            if after < 0:
                after = pos + 2
            limit = start  # the target must not overlap what was read so far
            pos = start = target
        else:
            raise _Fallback
    if size > MAX_NAME_WIRE:
        raise _Fallback
    text = (b".".join(labels).decode("ascii").lower() + ".") if labels else "."
    return text, (after if after >= 0 else pos)


def _read_opt(wire: bytes, pos: int) -> tuple[int, int]:
    """An OPT record without options at ``pos``: (its TTL field, the position after it)."""
    if pos >= len(wire) or wire[pos] != 0:
        raise _Fallback
    rtype, _, ext, rdlen = _RR.unpack_from(wire, pos + 1)
    if rtype != TYPE_OPT or rdlen:
        raise _Fallback
    return ext, pos + 1 + _RR.size


def _header(wire: bytes, response: bool) -> tuple[int, int, int]:
    """(flags, answer count, additional count) of a QUERY message with one question."""
    if len(wire) < HEADER.size:
        raise _Fallback
    _, flags, qd, an, ns, ar = HEADER.unpack_from(wire)
    if bool(flags & QR) != response or (flags >> 11) & 0xF or qd != 1 or ns or ar > 1:
        raise _Fallback
    return flags, an, ar


def fast_query(wire: bytes) -> Query | None:
    """The short reader's :class:`Query`, or None when dnspython must decide."""
    try:
        _, an, ar = _header(wire, response=False)
        if an:
            raise _Fallback
        name, pos = _read_name(wire, HEADER.size, len(wire))
        qtype, _ = _QUESTION.unpack_from(wire, pos)
        pos += _QUESTION.size
        if ar:
            _, pos = _read_opt(wire, pos)
        if pos != len(wire):
            raise _Fallback
    except (_Fallback, struct.error):
        return None
    return Query(name, (qtype,))


def fast_answer(wire: bytes) -> Answer | None:
    """The short reader's :class:`Answer`, or None when dnspython must decide."""
    try:
        flags, an, ar = _header(wire, response=True)
        end = len(wire)
        name, pos = _read_name(wire, HEADER.size, end)
        _QUESTION.unpack_from(wire, pos)
        pos += _QUESTION.size
        # records grouped as dnspython groups them into RRsets: by owner and type, in order of first
        # appearance, each value once, the RRset's TTL the lowest of its records
        groups: dict[tuple[str, int], tuple[list[int], dict[str, None]]] = {}
        for _ in range(an):
            owner, pos = _read_name(wire, pos, end)
            rtype, rclass, ttl, rdlen = _RR.unpack_from(wire, pos)
            pos += _RR.size
            rd_end = pos + rdlen
            if rclass != 1 or rd_end > end:
                raise _Fallback
            if rtype == TYPE_A and rdlen == 4:
                value = dns.ipv4.inet_ntoa(wire[pos:rd_end])
            elif rtype == TYPE_AAAA and rdlen == 16:
                value = dns.ipv6.inet_ntoa(wire[pos:rd_end])
            elif rtype == TYPE_CNAME:
                value, after = _read_name(wire, pos, rd_end)
                if after != rd_end:
                    raise _Fallback
            else:
                raise _Fallback
            pos = rd_end
            if ttl > 0x7FFFFFFF:  # RFC 2181 section 8: a TTL with the top bit set is zero
                ttl = 0
            group = groups.get((owner, rtype))
            if group is None:
                groups[(owner, rtype)] = ([ttl], {value: None})
            else:
                group[0][0] = min(group[0][0], ttl)
                group[1][value] = None
        ext = 0
        if ar:
            ext, pos = _read_opt(wire, pos)
        if pos != end:
            raise _Fallback
    except (_Fallback, struct.error, ValueError):
        return None
    ips: list[str] = []
    cnames: list[str] = []
    types: list[int] = []
    low = 0
    for (_, rtype), (ttl_box, values) in groups.items():
        types += [rtype] * len(values)
        if rtype == TYPE_CNAME:
            cnames += values
        else:
            ips += values
            low = ttl_box[0] if not low or ttl_box[0] < low else low
    rcode = (flags & 0xF) | (((ext >> 24) & 0xFF) << 4)
    return Answer(name, rcode, tuple(ips), low, tuple(cnames), tuple(types))


def parse_query(wire: bytes) -> Query:
    """A query's name and types; raises Malformed."""
    found = fast_query(wire)
    return found if found is not None else dnspython_query(wire)


def parse_answer(wire: bytes) -> Answer:
    """An answer's rcode, addresses, lowest TTL and CNAMEs; raises Malformed."""
    found = fast_answer(wire)
    return found if found is not None else dnspython_answer(wire)


def dnspython_query(wire: bytes) -> Query:
    """:func:`parse_query` by dnspython alone."""
    if len(wire) < HEADER.size:
        raise Malformed("shorter than a DNS header")
    try:
        msg = dns.message.from_wire(wire, ignore_trailing=False)
    except dns.exception.DNSException as exc:
        raise Malformed(f"not a DNS message: {exc.__class__.__name__}") from None
    except (ValueError, IndexError, UnicodeError) as exc:  # defensive: dnspython bugs on odd input
        raise Malformed(f"not a DNS message: {exc.__class__.__name__}") from None
    if msg.flags & dns.flags.QR:
        raise Malformed("a response, not a query")
    if msg.opcode() != dns.opcode.QUERY:
        raise Malformed(f"opcode {dns.opcode.to_text(msg.opcode())} is not QUERY")
    if len(msg.question) != 1:
        raise Malformed(f"{len(msg.question)} questions (one expected)")
    question = msg.question[0]
    name = question.name.to_text().lower()
    return Query(name, (int(question.rdtype),))


def dnspython_answer(wire: bytes) -> Answer:
    """:func:`parse_answer` by dnspython alone."""
    if len(wire) < HEADER.size:
        raise Malformed("shorter than a DNS header")
    try:
        msg = dns.message.from_wire(wire)
    except dns.exception.DNSException as exc:
        raise Malformed(f"not a DNS message: {exc.__class__.__name__}") from None
    except (ValueError, IndexError, UnicodeError) as exc:
        raise Malformed(f"not a DNS message: {exc.__class__.__name__}") from None
    if not msg.flags & dns.flags.QR:
        raise Malformed("a query, not a response")
    if len(msg.question) != 1:
        raise Malformed(f"{len(msg.question)} questions in the answer (one expected)")
    ips: list[str] = []
    cnames: list[str] = []
    types: list[int] = []
    ttl = 0
    for rrset in msg.answer:
        kind = int(rrset.rdtype)
        for rdata in rrset:
            types.append(kind)
            # records of another class (CH ...) have other data: only IN addresses and names count
            address = getattr(rdata, "address", None)
            target = getattr(rdata, "target", None)
            if kind in (TYPE_A, TYPE_AAAA) and isinstance(address, str):
                ips.append(address)
                ttl = rrset.ttl if not ttl or rrset.ttl < ttl else ttl
            elif kind == TYPE_CNAME and isinstance(target, dns.name.Name):
                cnames.append(target.to_text().lower())
    return Answer(
        msg.question[0].name.to_text().lower(), int(msg.rcode()), tuple(ips), ttl, tuple(cnames), tuple(types)
    )


class WireCache:
    """Parsed queries and answers by their bytes after the ID (bounded; cleared when full)."""

    def __init__(self, size: int = 16384) -> None:
        self.size = size
        self.queries: dict[bytes, Query | Malformed] = {}
        self.answers: dict[bytes, Answer | Malformed] = {}
        self.replies: dict[
            tuple[bytes, int], bytes
        ] = {}  # (query bytes after the ID, rcode) -> reply after the ID
        self.hits = 0
        self.misses = 0

    def query(self, wire: bytes) -> Query:
        key = wire[2:]
        found = self.queries.get(key)
        if found is None:
            self.misses += 1
            try:
                found = parse_query(wire)
            except Malformed as exc:
                found = exc
            if len(self.queries) >= self.size:
                self.queries.clear()
            self.queries[key] = found
        else:
            self.hits += 1
        if isinstance(found, Malformed):
            raise found
        return found

    def error_reply(self, wire: bytes, rcode: int) -> bytes:
        """:func:`error_reply` for a query that :meth:`query` accepted (memoized; the query's own ID)."""
        key = (wire[2:], rcode)
        found = self.replies.get(key)
        if found is None:
            if len(self.replies) >= self.size:
                self.replies.clear()
            found = self.replies[key] = error_reply(wire, rcode)[2:]
        return wire[:2] + found

    def answer(self, wire: bytes) -> Answer:
        key = wire[2:]
        found = self.answers.get(key)
        if found is None:
            self.misses += 1
            try:
                found = parse_answer(wire)
            except Malformed as exc:
                found = exc
            if len(self.answers) >= self.size:
                self.answers.clear()
            self.answers[key] = found
        else:
            self.hits += 1
        if isinstance(found, Malformed):
            raise found
        return found
