"""Hubble FlowFilter semantics for canonical dicts.

Public API:

- :func:`compile_flow_filters` ``(allow, deny) -> predicate(record) -> bool`` over canonical
  GetFlowsResponse dicts (one ``hubble observe -o json`` line, parsed).
- :func:`compile_byte_prefilter` ``(allow, deny) -> reject-fast(line_bytes) -> bool | None``,
  a conservative check on raw line bytes before JSON decoding; ``False`` means "cannot match".
- :class:`FilterError`: invalid filter; ``str()`` is upstream's exact message.
- Helpers for the CLI flag parser: :func:`parse_identity`, :data:`RESERVED_IDENTITIES`,
  :func:`compile_flow_filter` (one filter: check over a flow dict + result for flowless records),
  :func:`normalize_flow_filter` (lowerCamel keys to proto names).
"""

from hubblepy.filters.compiler import compile_flow_filter, compile_flow_filters, normalize_flow_filter
from hubblepy.filters.errors import FilterError
from hubblepy.filters.identity import RESERVED_IDENTITIES, go_parse_uint_base0, parse_identity
from hubblepy.filters.prefilter import compile_byte_prefilter

__all__ = [
    "RESERVED_IDENTITIES",
    "FilterError",
    "compile_byte_prefilter",
    "compile_flow_filter",
    "compile_flow_filters",
    "go_parse_uint_base0",
    "normalize_flow_filter",
    "parse_identity",
]
