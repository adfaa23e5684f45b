"""Go-compatible compact JSON for canonical dicts (cli-formats §9, hubble-api §6).

Canonical dicts already hold keys in declaration order and values in protojson form, so encoding is
orjson's compact output plus the HTML escaping Go's `encoding/json` applies (`<`, `>`, `&`, U+2028,
U+2029). orjson already writes control characters the way Go does (`\\n`, `\\u001b`, ...).
"""

from __future__ import annotations

import orjson

_HTML_UNSAFE = (
    (b"<", b"\\u003c"),
    (b">", b"\\u003e"),
    (b"&", b"\\u0026"),
    ("\u2028".encode(), b"\\u2028"),
    ("\u2029".encode(), b"\\u2029"),
)


def encode_canonical(value: dict) -> bytes:
    """One compact JSON object (no trailing newline), byte-identical to upstream for canonical input."""
    data = orjson.dumps(value)
    for raw, escaped in _HTML_UNSAFE:
        if raw in data:
            data = data.replace(raw, escaped)
    return data
