"""The access log's header sets: a row's header set and X-Request-Id hole give the node the same
``HTTP.Headers`` (bytes and order) as Go's ``http.Header`` map built for every record, and a
connection's requests share one set."""

from __future__ import annotations

import orjson
import pytest

from hubblepy.proxy.accesslog import HeaderSetMemo, LazyRecord, header_map, header_set

CASES = [
    [],
    [(b"X-Request-Id", b"0f3c")],
    [(b"Host", b"api:8080"), (b"User-Agent", b"wrk"), (b"X-Request-Id", b"0f3c")],
    [(b"host", b"api"), (b"accept", b"*/*"), (b"Accept", b"text/plain"), (b"X-Request-Id", b"1")],
    [(b"x-request-id", b"client"), (b"X-Request-Id", b"proxy")],  # one key, both values in order
    [(b"X-Request-Id", b""), (b"X-Request-Id", b"proxy")],
    [(b"Host", b'a"b\\c\xe9'), (b"X-Request-Id", b'quo"te\x01')],  # escaped as JSON strings
    [(b"Host", b"api"), (b"X-Request-Id", b"x"), (b"Accept", b"*/*")],  # a server's, not last
    [(b"Host", b"api"), (b"x-request-id", b"lower")],
    [(b"Content-Type", b"text/plain")],  # no X-Request-Id at all
]


def _node_headers(headers: list[tuple[bytes, bytes]]) -> bytes:
    """What the node makes of a row with these headers (the set as it is sent, and the hole)."""
    found, request_id = header_set(headers)
    record = LazyRecord({}, {}, 0, orjson.loads(found.definition), request_id).whole()
    return orjson.dumps(record["HTTP"]["Headers"])


@pytest.mark.parametrize("headers", CASES)
def test_header_set_and_hole_give_the_header_map(headers: list[tuple[bytes, bytes]]) -> None:
    expected = orjson.dumps(header_map(headers))
    assert _node_headers(headers) == expected
    assert _node_headers(list(headers)) == expected  # from the cache the second time
    ids = [i for i, (name, _) in enumerate(headers) if name.lower() == b"x-request-id"]
    if len(ids) == 1:  # another request of the connection: the same set, another hole
        other = list(headers)
        other[ids[0]] = (other[ids[0]][0], b"another")
        assert header_set(other)[0] is header_set(headers)[0]
        assert header_set(other)[1] == "another"
        assert _node_headers(other) == orjson.dumps(header_map(other))


@pytest.mark.parametrize("headers", CASES)
def test_the_proxys_own_id_added_last_is_the_hole(headers: list[tuple[bytes, bytes]]) -> None:
    whole = [*headers, (b"X-Request-Id", b"proxy-id")]
    found, hole = header_set(whole)
    assert _node_headers(whole) == orjson.dumps(header_map(whole))
    if any(name.lower() == b"x-request-id" for name, _ in headers):
        assert hole is None  # the values go together: no hole
        return
    assert hole == "proxy-id"
    assert header_set([*headers, (b"X-Request-Id", b"other")]) == (found, "other")


def test_a_connections_memo_gives_what_header_set_gives() -> None:
    """A connection's memo of its last header list: the same set and hole as header_set for every
    list, repeated or changed, with or without an X-Request-Id of its own before the added one."""
    memo = HeaderSetMemo()
    for headers in [*CASES, CASES[2], CASES[2], CASES[4], CASES[3], CASES[3], [], CASES[9]]:
        for added in ("proxy-1", "proxy-2"):
            assert memo.header_set(list(headers), added) == header_set(headers, added), (headers, added)
        whole = [*headers, (b"X-Request-Id", b"proxy-3")]  # the proxy's own id at the end of the list
        assert memo.header_set(whole) == header_set(whole), headers
        assert memo.header_set(list(headers)) == header_set(headers), headers
    kept = [(b"Host", b"api")]
    memo.header_set(kept, "x")
    kept.append((b"Accept", b"*/*"))  # the caller's list changed after: the memo kept its own copy
    assert memo.header_set([(b"Host", b"api")], "y") == header_set([(b"Host", b"api")], "y")
