"""The world's upstream resolver: answers the names of the scenario's ``world.hosts`` (dnspython).

It stands in for the internet's DNS behind the lab's kube-dns (which forwards every name outside the
cluster domain to it, as CoreDNS's ``forward`` plugin does). For a host's name, or any name of a
``*.`` family, it answers A queries with ``answers`` of the host's addresses, taking the next ones at
every query (a CDN's rotating answers), with the host's short TTL; other query types of a known name
get an empty NOERROR answer, unknown names NXDOMAIN. Malformed queries get FORMERR when their header
can be read, and no answer otherwise.

The hosts file is a JSON list of ``{"name", "addresses", "ttl", "answers"}`` written by the lab node.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

HEADER_LEN = 12


@dataclass(frozen=True)
class NameEntry:
    """One ``world.hosts`` entry as the resolver sees it."""

    name: str  # lowercase, no trailing dot; "*.example.com" names a family
    addresses: tuple[str, ...]
    ttl: int
    answers: int = 1

    def matches(self, qname: str) -> bool:
        if self.name.startswith("*."):
            return qname.endswith(self.name[1:])
        return qname == self.name

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "addresses": list(self.addresses),
            "ttl": self.ttl,
            "answers": self.answers,
        }


def write_hosts_file(path: Path, entries: Iterable[NameEntry]) -> None:
    path.write_text(json.dumps([e.to_json() for e in entries], indent=1))


def read_hosts_file(path: Path) -> list[NameEntry]:
    data = json.loads(path.read_text())
    return [
        NameEntry(e["name"], tuple(e["addresses"]), int(e["ttl"]), int(e.get("answers", 1))) for e in data
    ]


class WorldResolver:
    """Answers DNS queries (wire format in, wire format out) for a fixed set of world names."""

    def __init__(self, entries: Iterable[NameEntry]) -> None:
        entries = list(entries)
        self._exact = {e.name: e for e in entries if not e.name.startswith("*.")}
        # the longest family suffix wins: *.eu.example.com before *.example.com
        self._families = sorted(
            (e for e in entries if e.name.startswith("*.")), key=lambda e: len(e.name), reverse=True
        )
        self._counters: dict[str, itertools.count[int]] = {}
        self._lock = threading.Lock()
        self.queries = 0

    def lookup(self, qname: str) -> NameEntry | None:
        key = qname.lower().rstrip(".")
        found = self._exact.get(key)
        if found is not None:
            return found
        return next((e for e in self._families if e.matches(key)), None)

    def next_addresses(self, qname: str, entry: NameEntry) -> list[str]:
        """The addresses of the next answer for ``qname`` (each name rotates on its own)."""
        key = qname.lower().rstrip(".")
        with self._lock:
            turn = next(self._counters.setdefault(key, itertools.count()))
        n = len(entry.addresses)
        return [entry.addresses[(turn + i) % n] for i in range(entry.answers)]

    def answer(self, wire: bytes) -> bytes | None:
        self.queries += 1
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return _formerr(wire)
        if query.flags & dns.flags.QR or len(query.question) != 1:
            return _formerr(wire) if not query.flags & dns.flags.QR else None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA | dns.flags.RA
        question = query.question[0]
        qname = question.name.to_text(omit_final_dot=True)
        entry = self.lookup(qname)
        if entry is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif question.rdtype == dns.rdatatype.A and question.rdclass == dns.rdataclass.IN:
            addresses = self.next_addresses(qname, entry)
            response.answer.append(dns.rrset.from_text_list(question.name, entry.ttl, "IN", "A", addresses))
        return response.to_wire()


def _formerr(wire: bytes) -> bytes | None:
    """A FORMERR reply echoing the query's id (None when not even the header is there)."""
    if len(wire) < HEADER_LEN:
        return None
    flags = int.from_bytes(wire[2:4], "big")
    if flags & dns.flags.QR:
        return None
    reply_flags = dns.flags.QR | (flags & dns.flags.RD) | dns.rcode.FORMERR
    return wire[:2] + reply_flags.to_bytes(2, "big") + bytes(8)


__all__ = ["NameEntry", "WorldResolver", "read_hosts_file", "write_hosts_file"]
