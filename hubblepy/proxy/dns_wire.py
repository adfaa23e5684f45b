"""DNS messages for the DNS proxy: queries and answers parsed with dnspython, memoized by their bytes.

A proxy sees the same few messages again and again (the same names asked by the same resolvers), and
dnspython takes tens of microseconds per message, so each parse is kept by the message's bytes after
the 16-bit ID (:class:`WireCache`): a repeated query costs a dictionary lookup, and the answer to a
refused query is kept with it (only its ID changes). Every message the proxy has not seen is parsed
in full by dnspython, which also validates it; whatever dnspython refuses, and whatever is not a
plain one-question query, is :class:`Malformed`.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import dns.exception
import dns.flags
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


def parse_query(wire: bytes) -> Query:
    """A query's name and types; raises Malformed."""
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


def parse_answer(wire: bytes) -> Answer:
    """An answer's rcode, addresses, lowest TTL and CNAMEs; raises Malformed."""
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
