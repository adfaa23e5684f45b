"""JSON codec for Hubble records: canonical dicts, upstream-identical JSON lines, protobuf messages.

A *canonical dict* is what ``orjson.loads`` returns for one line of upstream
``hubble observe -o json`` output (proto field names in declaration order, enums
as names, 64-bit integers as strings, UTC timestamps, defaults omitted).

- :class:`ResponseDecoder` decodes ``--input-file`` lines (fast when already canonical).
- :func:`encode` / :func:`encode_response` print canonical dicts exactly like upstream.
- :func:`normalize` / :func:`parse_message` turn lenient protojson into canonical dicts.
- :func:`message_to_dict` / :func:`dict_to_message` convert to and from protobuf messages.
"""

from typing import TYPE_CHECKING

from .decoder import ResponseDecoder, normalize, parse_message
from .errors import DecodeError
from .jsontext import encode, encode_response

if TYPE_CHECKING:
    from .messages import dict_to_message, message_to_dict

# ``messages`` loads protobuf's json_format: imported on first use (start-up of `hubble observe`).


def __getattr__(name: str) -> object:
    if name in ("dict_to_message", "message_to_dict"):
        from . import messages

        return getattr(messages, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DecodeError",
    "ResponseDecoder",
    "dict_to_message",
    "encode",
    "encode_response",
    "message_to_dict",
    "normalize",
    "parse_message",
]
