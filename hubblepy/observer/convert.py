"""Canonical dicts <-> protobuf messages and wire bytes, plus field masks on flow dicts.

The ring holds canonical dicts; clients get protobuf bytes. This module is the one place that
crosses that boundary, dicts become messages through :mod:`hubblepy.observer.fastproto`; messages become dicts through
:mod:`hubblepy.codec` when it is available and protobuf's ``json_format`` otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from hubblepy.observer.fastproto import fill

try:  # the codec helper's canonical (declaration-ordered) dicts, when present
    from hubblepy.codec import message_to_dict as _codec_message_to_dict
except ImportError:  # pragma: no cover - depends on the codec landing
    _codec_message_to_dict = None

MaskTree = dict[str, Any]


def dict_to_message(data: dict[str, Any], message: Message) -> Message:
    """Fill ``message`` (an empty instance) from a canonical dict and return it."""
    return fill(message, data)


def message_to_dict(message: Message) -> dict[str, Any]:
    """Canonical dict of a protobuf message (proto field names, defaults omitted)."""
    if _codec_message_to_dict is not None:
        return _codec_message_to_dict(message)
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


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
