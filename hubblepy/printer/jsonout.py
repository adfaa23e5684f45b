"""Go-compatible compact JSON for canonical dicts (what upstream hubble 1.19 prints with -o json: Go's protojson).

The encoding itself belongs to `hubblepy.codec` (`encode` / `encode_response`). A local copy of
the same rule is kept as a fallback so the printer works on its own: canonical dicts already hold
keys in declaration order and values in protojson form, so upstream's bytes are orjson's compact
output plus Go's HTML escaping (`<`, `>`, `&`, U+2028, U+2029).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson

_HTML_CHARS = re.compile("[<>&\u2028\u2029]".encode())
_HTML_ESCAPES = (
    (b"<", b"\\u003c"),
    (b">", b"\\u003e"),
    (b"&", b"\\u0026"),
    ("\u2028".encode(), b"\\u2028"),
    ("\u2029".encode(), b"\\u2029"),
)


def _encode_locally(value: Any) -> bytes:
    data = orjson.dumps(value)
    if _HTML_CHARS.search(data) is None:
        return data
    for raw, escaped in _HTML_ESCAPES:
        data = data.replace(raw, escaped)
    return data


_codec_encode: Callable[[Any], bytes] | None
try:
    from hubblepy.codec import encode as _codec_encode_fn

    _codec_encode = _codec_encode_fn
except ImportError:  # the codec package is optional for the printer
    _codec_encode = None


def encode_canonical(value: Any) -> bytes:
    """One compact JSON object (no trailing newline), byte-identical to upstream for canonical input."""
    if _codec_encode is not None:
        return _codec_encode(value)
    return _encode_locally(value)
