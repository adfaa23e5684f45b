"""The DNS proxy's messages (hubblepy.proxy.dns_wire): queries, answers, REFUSED replies, the parse cache."""

from __future__ import annotations

import dns.edns
import dns.message
import dns.rcode
import dns.rrset
import pytest

from hubblepy.proxy.dns_wire import (
    RCODE_REFUSED,
    RCODE_SERVFAIL,
    Malformed,
    WireCache,
    parse_answer,
    parse_query,
)


def query(name: str = "Api.Stripe.com", rdtype: str = "A", **kwargs) -> bytes:
    return dns.message.make_query(name, rdtype, **kwargs).to_wire()


def answer_of(wire: bytes) -> dns.message.Message:
    msg = dns.message.make_response(dns.message.from_wire(wire))
    msg.answer.append(dns.rrset.from_text(msg.question[0].name, 60, "IN", "CNAME", "Edge.Stripe.com."))
    msg.answer.append(dns.rrset.from_text("edge.stripe.com.", 30, "IN", "A", "192.0.2.20", "192.0.2.21"))
    msg.answer.append(dns.rrset.from_text("edge.stripe.com.", 20, "IN", "AAAA", "2001:db8::1"))
    return msg


def test_query_name_is_lowercase_with_the_final_dot() -> None:
    parsed = parse_query(query())
    assert parsed.name == "api.stripe.com." and parsed.qtypes == (1,)
    assert parse_query(query("x.example", "AAAA")).qtypes == (28,)


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (b"", "shorter than a DNS header"),
        (b"\x00" * 11, "shorter than a DNS header"),
        (b"\xff" * 40, "not a DNS message"),
        (query()[:20], "not a DNS message"),
        (query() + b"junk", "not a DNS message"),
        (dns.message.make_response(dns.message.from_wire(query())).to_wire(), "a response, not a query"),
        (query()[:4] + b"\x00\x00" + query()[6:12], "0 questions"),
    ],
)
def test_bad_queries_are_malformed(wire: bytes, reason: str) -> None:
    with pytest.raises(Malformed, match=reason):
        parse_query(wire)


def test_answer_addresses_lowest_ttl_cnames_and_types() -> None:
    parsed = parse_answer(answer_of(query()).to_wire())
    assert parsed.name == "api.stripe.com." and parsed.rcode == 0
    assert sorted(parsed.ips) == ["192.0.2.20", "192.0.2.21", "2001:db8::1"]
    assert parsed.ttl == 20 and parsed.cnames == ("edge.stripe.com.",)
    assert sorted(parsed.answer_types) == [1, 1, 5, 28]


def test_refused_and_servfail_replies_keep_id_question_and_edns() -> None:
    wire = query(use_edns=0, options=[dns.edns.GenericOption(10, b"12345678")])
    cache = WireCache()
    for rcode in (RCODE_REFUSED, RCODE_SERVFAIL):
        reply = dns.message.from_wire(cache.error_reply(wire, rcode))
        asked = dns.message.from_wire(wire)
        assert reply.id == asked.id and reply.question == asked.question
        assert reply.rcode() == dns.rcode.Rcode(rcode) and not reply.answer and reply.edns == 0
    # the memoized reply follows the query's ID
    other = b"\x12\x34" + wire[2:]
    assert cache.error_reply(other, RCODE_REFUSED)[:2] == b"\x12\x34"


def test_cache_hits_repeat_parses_and_rejections() -> None:
    cache = WireCache(size=2)
    first = query()
    assert cache.query(first) == cache.query(b"\xaa\xbb" + first[2:])  # the ID is not part of the key
    assert (cache.hits, cache.misses) == (1, 1)
    for _ in range(2):
        with pytest.raises(Malformed):
            cache.query(b"\x00" * 5)
    assert (cache.hits, cache.misses) == (2, 2)
    cache.query(query("b.example"))
    cache.query(query("c.example"))  # over the size: cleared, still correct
    assert len(cache.queries) <= 2
