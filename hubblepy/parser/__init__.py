"""Datapath event decoder: raw ``cilium_events`` samples to canonical flow dicts.

Public API: ``Parser`` (``decode_batch``, ``decode``, ``decode_debug``, the lazy pair
``capture_batch``/``materialize`` over ``RawFlow`` records, and the error counters),
the ``Resolver`` protocol with ``EndpointInfo`` / ``PolicyMatch``, and ``StaticResolver``.
"""

from hubblepy.parser.flows import Parser, RawFlow, format_timestamp, format_uuid4, uuid4_strings
from hubblepy.parser.resolver import EndpointInfo, NamesAndServices, PolicyMatch, Resolver, StaticResolver

__all__ = [
    "EndpointInfo",
    "NamesAndServices",
    "Parser",
    "RawFlow",
    "PolicyMatch",
    "Resolver",
    "StaticResolver",
    "format_timestamp",
    "format_uuid4",
    "uuid4_strings",
]
