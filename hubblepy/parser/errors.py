"""Why a sample or record was not turned into a flow: the reasons counted in ``Parser.error_counts``.

The decoders raise ``MalformedSample(reason)`` to reject one input with a counted reason and
``SkippedSample`` for a valid input that is deliberately not turned into a flow; the batch loops
catch both, so decoding never raises to the caller.
"""

from __future__ import annotations

# Error reasons counted in Parser.error_counts.
ERR_EMPTY = "empty_sample"
ERR_INVALID_TYPE = "invalid_type"
ERR_TRUNCATED = "truncated_header"
ERR_VERSION = "unsupported_version"
ERR_EXT_VERSION = "unknown_ext_version"
ERR_PACKET = "malformed_packet"
ERR_INTERNAL = "internal_error"
ERR_RECORD = "malformed_access_log_record"  # not a JSON object / wrong field types
ERR_TIMESTAMP = "invalid_timestamp"  # an access-log record whose Timestamp is not RFC 3339


class SkippedSample(Exception):
    """Raised inside the decoders for a valid input that is deliberately not turned into a flow."""


class MalformedSample(Exception):
    """Raised inside the decoders to reject one input with a counted reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
