"""Datapath event decoder: raw ``cilium_events`` samples to canonical flow dicts.

Public API: ``Parser`` (``decode_batch``, ``decode``, ``decode_debug``, the lazy pair
``capture_batch``/``materialize`` over ``RawFlow`` records, and the error counters),
the ``Resolver`` protocol with ``EndpointInfo`` / ``PolicyMatch``, its optional extensions
``DnsNameResolver`` / ``ServiceResolver``, and ``StaticResolver``.
"""

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

__all__ = [
    "DnsNameResolver",
    "EndpointInfo",
    "NamesAndServices",
    "Parser",
    "RawFlow",
    "PolicyMatch",
    "Resolver",
    "ServiceResolver",
    "StaticResolver",
    "format_timestamp",
    "format_uuid4",
    "uuid4_strings",
]
