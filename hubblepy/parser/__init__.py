"""Datapath event decoder: raw ``cilium_events`` samples to canonical flow dicts.

Public API: ``Parser`` (``decode_batch``, ``decode``, ``decode_debug`` and the error counters),
the ``Resolver`` protocol with ``EndpointInfo`` / ``PolicyMatch``, and ``StaticResolver``.
"""

from hubblepy.parser.flows import Parser, format_timestamp, uuid4_strings
from hubblepy.parser.resolver import EndpointInfo, PolicyMatch, Resolver, StaticResolver

__all__ = [
    "EndpointInfo",
    "Parser",
    "PolicyMatch",
    "Resolver",
    "StaticResolver",
    "format_timestamp",
    "uuid4_strings",
]
