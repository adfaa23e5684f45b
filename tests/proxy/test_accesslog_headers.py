"""The access log's header JSON: the cached form (headers before the proxy's X-Request-Id) writes the
same bytes as Go's ``http.Header`` map built for every record."""

from __future__ import annotations

import orjson
import pytest

from hubblepy.proxy.accesslog import header_json, header_map

CASES = [
    [],
    [(b"X-Request-Id", b"0f3c")],
    [(b"Host", b"api:8080"), (b"User-Agent", b"wrk"), (b"X-Request-Id", b"0f3c")],
    [(b"host", b"api"), (b"accept", b"*/*"), (b"Accept", b"text/plain"), (b"X-Request-Id", b"1")],
    [(b"x-request-id", b"client"), (b"X-Request-Id", b"proxy")],  # one key, both values in order
    [(b"Host", b'a"b\\c\xe9'), (b"X-Request-Id", b'quo"te\x01')],  # escaped as JSON strings
    [(b"Host", b"api"), (b"X-Request-Id", b"x"), (b"Accept", b"*/*")],  # not last: no cache
    [(b"Host", b"api"), (b"x-request-id", b"lower")],
]


@pytest.mark.parametrize("headers", CASES)
def test_header_json_is_the_header_map_json(headers: list[tuple[bytes, bytes]]) -> None:
    expected = orjson.dumps(header_map(headers))
    assert header_json(headers) == expected
    assert header_json(list(headers)) == expected  # from the cache the second time
    if headers and headers[-1][0] == b"X-Request-Id":
        other = [*headers[:-1], (b"X-Request-Id", b"another")]
        assert header_json(other) == orjson.dumps(header_map(other))
