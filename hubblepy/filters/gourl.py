"""The path part of a URL as Go's ``url.ParseRequestURI`` computes it.

``--http-path`` matches its regexp against ``uri.Path`` after ``url.ParseRequestURI``; URLs that
Go rejects never match. This module reproduces the acceptance rules that matter for that:
control characters, the scheme syntax, "invalid URI for request", authority/host checks, and
percent-decoding of the path (no fragment splitting: request URIs keep ``#`` in the path).
"""

from __future__ import annotations

_HEXDIGITS = "0123456789abcdefABCDEF"
# Characters allowed unescaped in a host (Go shouldEscape(c, encodeHost) == false).
_HOST_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~!$&'()*+,;=:[]<>\"")
_USERINFO_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._:~!$&'()*+,;=%@")


def _unescape(text: str, host: bool) -> str | None:
    """Percent-decode like Go ``unescape``; None where Go returns an error."""
    if "%" not in text:
        if host and any(ord(c) < 0x80 and c not in _HOST_OK for c in text):
            return None
        return text
    out = bytearray()
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == "%":
            if i + 3 > n:
                return None
            h1, h2 = text[i + 1], text[i + 2]
            if h1 not in _HEXDIGITS or h2 not in _HEXDIGITS:
                return None
            if host and int(h1, 16) < 8 and text[i : i + 3] != "%25":
                return None
            out.append(int(h1 + h2, 16))
            i += 3
            continue
        if host and ord(c) < 0x80 and c not in _HOST_OK:
            return None
        out += c.encode("utf-8", "surrogateescape")
        i += 1
    return out.decode("utf-8", "replace")


def _scheme_split(raw: str) -> tuple[str, str] | None:
    """Go ``getScheme``: (scheme, rest), or None for "missing protocol scheme"."""
    for i, c in enumerate(raw):
        if c.isascii() and c.isalpha():
            continue
        if c.isascii() and (c.isdigit() or c in "+-."):
            if i == 0:
                return "", raw
            continue
        if c == ":":
            if i == 0:
                return None
            return raw[:i], raw[i + 1 :]
        return "", raw
    return "", raw


def _valid_port(port: str) -> bool:
    return port == "" or (port[0] == ":" and all("0" <= c <= "9" for c in port[1:]))


def _host_ok(authority: str) -> bool:
    at = authority.rfind("@")
    host = authority if at < 0 else authority[at + 1 :]
    if host.startswith("["):
        close = host.rfind("]")
        if close < 0 or not _valid_port(host[close + 1 :]):
            return False
    else:
        colon = host.rfind(":")
        if colon != -1 and not _valid_port(host[colon:]):
            return False
    if _unescape(host, host=True) is None:
        return False
    if at >= 0:
        userinfo = authority[:at]
        if any(c.isascii() and c not in _USERINFO_OK for c in userinfo):
            return False
        if _unescape(userinfo, host=False) is None:
            return False
    return True


def request_uri_path(raw: str) -> str | None:
    """Return ``url.ParseRequestURI(raw).Path`` or None when Go would return an error."""
    if raw == "" or any(ord(c) < 0x20 or c == "\x7f" for c in raw):
        return None
    if raw == "*":
        return "*"
    split = _scheme_split(raw)
    if split is None:
        return None
    scheme, rest = split
    # A lone trailing "?" is ForceQuery; otherwise the query starts at the first "?".
    rest = rest[:-1] if rest.endswith("?") and rest.count("?") == 1 else rest.split("?", 1)[0]
    if not rest.startswith("/"):
        if scheme:
            return ""  # opaque URL: Path stays empty
        return None  # "invalid URI for request"
    if scheme and rest.startswith("//"):
        authority = rest[2:]
        slash = authority.find("/")
        if slash >= 0:
            authority, rest = authority[:slash], authority[slash:]
        else:
            rest = ""
        if not _host_ok(authority):
            return None
    return _unescape(rest, host=False)
