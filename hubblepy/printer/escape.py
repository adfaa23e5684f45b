"""Text helpers that mimic what upstream's Go printer does to strings.

- `escape_terminal`: the terminal-safety pass over compact, dict and table output (as upstream hubble 1.19 escapes):
  ESC becomes `^[` and CR becomes `\\r`; with colours on, the seven colour sequences the printer can
  emit pass through unchanged.
- `go_quote`: Go's `strconv.Quote` (used for node-status messages).
- `go_path_join`: Go's `path.Join` of a namespace and a name (it also cleans the path).
"""

from __future__ import annotations

import re

from hubblepy.gotext import go_quote  # noqa: F401 - part of this module's interface

# ESC that does not start one of the allowed SGR sequences (red..cyan 31-36 and reset 0), or CR.
_UNSAFE_WITH_COLOURS = re.compile("\x1b(?!\\[(?:3[1-6]|0)m)|\r")


def _replace_unsafe(match: re.Match[str]) -> str:
    return "^[" if match.group() == "\x1b" else "\\r"


def escape_terminal(text: str, keep_colours: bool) -> str:
    """Escape ESC and CR; keep the printer's own colour sequences when `keep_colours`."""
    if "\x1b" not in text:
        if "\r" not in text:
            return text
        return text.replace("\r", "\\r")
    if keep_colours:
        return _UNSAFE_WITH_COLOURS.sub(_replace_unsafe, text)
    return text.replace("\x1b", "^[").replace("\r", "\\r")


def go_path_clean(path: str) -> str:
    """Go's `path.Clean` (lexical clean-up of a slash-separated path)."""
    if path == "":
        return "."
    rooted = path[0] == "/"
    parts: list[str] = []
    for element in path.split("/"):
        if element in ("", "."):
            continue
        if element == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            continue
        parts.append(element)
    cleaned = "/".join(parts)
    if rooted:
        return "/" + cleaned
    return cleaned or "."


def go_path_join(namespace: str, name: str) -> str:
    """Go's `path.Join(namespace, name)` for a non-empty name: `ns/name`, or `name` when ns is empty."""
    if "/" not in name and name[0] != "." and "/" not in namespace and namespace[:1] != ".":
        if namespace:
            return f"{namespace}/{name}"
        return name
    if namespace:
        return go_path_clean(f"{namespace}/{name}")
    return go_path_clean(name)
