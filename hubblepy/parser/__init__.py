"""Datapath event decoder: raw ``cilium_events`` samples to canonical flow dicts.

Public API: ``Parser`` (``decode_batch``, ``decode``, ``decode_debug``, the lazy pair
``capture_batch``/``materialize`` over ``RawFlow`` records, and the error counters),
the ``Resolver`` protocol with ``EndpointInfo`` / ``PolicyMatch``, its optional extensions
``DnsNameResolver`` / ``ServiceResolver``, and ``StaticResolver``. L7: ``Parser.seven`` (a
``SevenParser``) turns proxy access-log records into L7 flows, with ``RedactOptions``;
``access_log_sample`` wraps a record as a type-129 sample for ``Parser.decode_batch``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hubblepy.parser.flows import Parser, RawFlow, format_timestamp, format_uuid4, uuid4_strings
    from hubblepy.parser.resolver import (
        DnsNameResolver,
        EndpointInfo,
        NamesAndServices,
        PolicyMatch,
        Resolver,
        ServiceResolver,
        StaticResolver,
    )
    from hubblepy.parser.seven import RedactOptions, SevenParser, access_log_sample

# The public names are loaded on first use, so that importing a light submodule (``constants``,
# which the printer and the filters read) does not load the whole decoder.
_HOMES = {
    "Parser": "flows",
    "RawFlow": "flows",
    "format_timestamp": "flows",
    "format_uuid4": "flows",
    "uuid4_strings": "flows",
    "DnsNameResolver": "resolver",
    "EndpointInfo": "resolver",
    "NamesAndServices": "resolver",
    "PolicyMatch": "resolver",
    "Resolver": "resolver",
    "ServiceResolver": "resolver",
    "StaticResolver": "resolver",
    "RedactOptions": "seven",
    "SevenParser": "seven",
    "access_log_sample": "seven",
}


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


__all__ = [
    "DnsNameResolver",
    "EndpointInfo",
    "NamesAndServices",
    "Parser",
    "RawFlow",
    "RedactOptions",
    "PolicyMatch",
    "Resolver",
    "ServiceResolver",
    "SevenParser",
    "StaticResolver",
    "access_log_sample",
    "format_timestamp",
    "format_uuid4",
    "uuid4_strings",
]
