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

Semantics (Hubble 1.19: the CLI's filter flags and Cilium's pkg/hubble/filters), in short:

- allow filters are OR-ed, deny filters are OR-ed; set fields of one filter are AND-ed and the
  values of one field are OR-ed; an empty filter ``{}`` matches everything;
- a record without ``flow`` behaves like an empty flow, except that uuid, verdict, drop reason,
  IP version and traffic direction filters reject it (so ``--unencrypted`` and ``!k`` label
  selectors let lost events through, ``--verdict VERDICT_UNKNOWN`` does not);
- IPs compare as text (``fd00::0:1`` does not equal ``fd00::1``) unless given as a CIDR;
- pods and services are ``[ns/]prefix`` (bare name: namespace ``default``; ``/x``: any namespace;
  ``/``: anything with a namespace or a name); FQDN and node-name globs are whole-name matches
  where ``*`` crosses dots; labels are Kubernetes selectors over Cilium ``source:key=value`` labels;
- HTTP path/url and DNS query filters are Go RE2 regexps, unanchored; the path is the one
  ``url.ParseRequestURI`` yields and an unparsable URL never matches.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from hubblepy.filters.errors import FilterError
from hubblepy.filters.identity import RESERVED_IDENTITIES, go_parse_uint_base0, parse_identity

if TYPE_CHECKING:
    from hubblepy.filters.compiler import compile_flow_filter, compile_flow_filters, normalize_flow_filter
    from hubblepy.filters.prefilter import compile_byte_prefilter

# The compilers load on first use: `hubble observe` without filter flags never needs them.
_HOMES = {
    "compile_flow_filter": "compiler",
    "compile_flow_filters": "compiler",
    "normalize_flow_filter": "compiler",
    "compile_byte_prefilter": "prefilter",
}


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


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
