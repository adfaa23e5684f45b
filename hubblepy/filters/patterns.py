"""FQDN and node-name glob patterns of ``--fqdn`` and ``--node-name``.

A pattern is trimmed, stripped of one trailing dot and lower-cased; it may only hold
``a-z 0-9 - _ .`` and ``*``, where ``*`` matches any run of ``[-.0-9a-z]`` (so it crosses dots).
All patterns of one filter field become one anchored regexp. Node names are matched as
``cluster/node``; a pattern without ``/`` matches the node in any cluster and an empty part
matches any name.
"""

from __future__ import annotations

import re

from hubblepy.filters.errors import FilterError
from hubblepy.gotext import go_quote_rune

# Any FQDN-ish name (what an empty cluster or node part of a node-name pattern matches).
_ANY_NAME = r"(?:[-0-9_a-z]+(?:\.[-0-9_a-z]+)*)"
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")


# Unicode White_Space, what Go's strings.TrimSpace removes.
_GO_SPACE = " \t\n\v\f\r\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"


def _go_trim_space(text: str) -> str:
    return text.strip(_GO_SPACE)


def _fqdn_regex(pattern: str) -> str:
    pattern = _go_trim_space(pattern)
    if pattern.endswith("."):
        pattern = pattern[:-1]
    pattern = pattern.lower()
    if pattern == "":
        raise FilterError("empty pattern")
    if pattern.endswith("."):
        raise FilterError("multiple trailing dots in pattern")
    parts: list[str] = []
    for ch in pattern:
        if ch == ".":
            parts.append(r"\.")
        elif ch == "*":
            parts.append("[-.0-9a-z]*")
        elif ch in _PLAIN:
            parts.append(ch)
        else:
            raise FilterError(f"{go_quote_rune(ch)}: invalid rune in pattern")
    return "".join(parts)


def compile_fqdn_patterns(patterns: list[str]) -> re.Pattern[str]:
    """One regexp matching a whole name against any of ``patterns``."""
    return re.compile("(?:" + "|".join(_fqdn_regex(p) for p in patterns) + r")\Z")


def _node_name_regex(pattern: str) -> str:
    if pattern == "":
        raise FilterError("empty pattern")
    elems = pattern.split("/")
    if len(elems) > 2:
        raise FilterError("too many slashes in pattern")
    cluster, node = ("", elems[0]) if len(elems) == 1 else (elems[0], elems[1])
    cluster_re = _ANY_NAME if cluster == "" else _fqdn_regex(cluster)
    node_re = _ANY_NAME if node == "" else _fqdn_regex(node)
    return f"{cluster_re}/{node_re}"


def compile_node_name_patterns(patterns: list[str]) -> re.Pattern[str]:
    """One regexp matching ``cluster/node`` against any of ``patterns``."""
    return re.compile("(?:" + "|".join(_node_name_regex(p) for p in patterns) + r")\Z")
