"""Canonical dicts <-> protobuf messages and wire bytes, plus field masks on flow dicts.

The ring holds canonical dicts; clients get protobuf bytes. This module is the one place in the
observer that crosses that boundary, both ways through :mod:`hubblepy.codec`. Dicts become messages
leniently: a replay file may carry keys this build does not know (they are skipped) and any RFC 3339
time spelling.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from google.protobuf.message import Message

from hubblepy.codec import dict_to_message as _codec_dict_to_message
from hubblepy.codec import message_to_dict as _codec_message_to_dict

MaskTree = dict[str, Any]


def dict_to_message(data: dict[str, Any], message: Message) -> Message:
    """Fill ``message`` (an empty instance) from a canonical dict and return it."""
    return _codec_dict_to_message(data, message, lenient=True)


def message_to_dict(message: Message) -> dict[str, Any]:
    """Canonical dict of a protobuf message (proto field names, declaration order, defaults omitted)."""
    return _codec_message_to_dict(message)


def compile_mask(paths: Iterable[str]) -> MaskTree:
    """Turn field-mask paths (``source.identity``, ``IP``) into a nested selection tree."""
    tree: MaskTree = {}
    for path in paths:
        node = tree
        parts = path.split(".")
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            current = node.get(part)
            if last:
                node[part] = True
            elif current is True:
                break  # a shorter path already selects the whole sub-message
            else:
                node = node.setdefault(part, {})
    return tree


def apply_mask(data: dict[str, Any], tree: MaskTree) -> dict[str, Any]:
    """Copy of ``data`` with only the fields selected by ``tree`` (key order kept)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        sub = tree.get(key)
        if sub is None:
            continue
        if sub is True or not isinstance(value, dict):
            out[key] = value
        else:
            out[key] = apply_mask(value, sub)
    return out
