"""The one exception type of the codec, with Go protojson style messages."""

from __future__ import annotations


class DecodeError(ValueError):
    """A JSON text or dict that does not decode as the expected protobuf message.

    ``message`` reads like the error of Go's protojson, e.g.
    ``proto: (line 1:21): unknown field "newThing"``.
    ``unknown`` is True when the only problem is an unknown field or an unknown
    enum name (the cases a lenient decode accepts).
    """

    def __init__(self, message: str, *, unknown: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.unknown = unknown

    def __str__(self) -> str:
        return self.message
