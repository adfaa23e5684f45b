"""Datapath event decoder: raw ``cilium_events`` samples to canonical flow dicts.

Public API: ``Parser`` (``decode_batch``, ``decode``, ``decode_debug``, the lazy pair
``capture_batch``/``materialize`` over ``RawFlow`` records, and the error counters),
the ``Resolver`` protocol with ``EndpointInfo`` / ``PolicyMatch``, its optional extensions
``DnsNameResolver`` / ``ServiceResolver``, and ``StaticResolver``. L7: ``Parser.seven`` (a
``SevenParser``) turns proxy access-log records into L7 flows, with ``RedactOptions``;
``access_log_sample`` wraps a record as a type-129 sample for ``Parser.decode_batch``.
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
from hubblepy.parser.seven import RedactOptions, SevenParser, access_log_sample

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
