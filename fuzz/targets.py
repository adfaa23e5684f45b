"""Fuzz targets: one function per input parser, each taking the fuzzer's bytes.

A target returns normally for any input the parser handles as designed, including a clean
rejection (``DecodeError`` for a flow line, ``PolicyError`` for a policy file, a counted
``malformed`` sample for the datapath parser). Anything else raises, and atheris records the input
as a crash: an unexpected exception, an internal parser error, or output that cannot be encoded.

* ``datapath``: :class:`hubblepy.parser.Parser` over one perf-ring sample (trace, drop, policy
  verdict, capture, trace-sock and debug messages), plus ``decode_debug``.
* ``flowline``: :class:`hubblepy.codec.ResponseDecoder` over one ``hubble observe --input-file``
  line, then the canonical encoding of what it decoded.
* ``policy``: :func:`hubblepy.policy.parse.parse_policies` over a policy file's text.
* ``dnsquery``: the DNS proxy's message parsing (:mod:`hubblepy.proxy.dns_wire`) over one datagram:
  as a query (an accepted one must give a REFUSED reply with its ID that parses again) and as an
  answer; a clean rejection is ``Malformed``; whatever the short reader accepts, dnspython must
  accept and read the same way.
"""

from __future__ import annotations

from collections.abc import Callable

NOW_NS = 1_700_000_000_000_000_000


def _datapath() -> Callable[[bytes], None]:
    from hubblepy.parser import EndpointInfo, Parser, StaticResolver
    from hubblepy.parser.flows import ERR_INTERNAL

    resolver = StaticResolver()
    for i in range(4):
        resolver.add_endpoint(
            EndpointInfo(
                id=100 + i,
                identity=10000 + i,
                namespace="fuzz",
                pod_name=f"pod-{i}",
                labels=(f"k8s:app=pod-{i}", "k8s:io.kubernetes.pod.namespace=fuzz"),
                workloads=((f"pod-{i}", "Deployment"),),
                ips=(f"10.0.0.{i + 1}",),
            )
        )
        resolver.set_interface(1000 + i, f"lxc{i:04d}")
    parser = Parser(resolver, "fuzz-node")

    def target(data: bytes) -> None:
        before = parser.error_counts[ERR_INTERNAL]
        flows = parser.decode_batch(((0, data),), NOW_NS)
        parser.decode_debug(0, data)
        if parser.error_counts[ERR_INTERNAL] != before:
            raise AssertionError(f"internal parser error: {parser.last_error}")
        import orjson

        for flow in flows:
            orjson.dumps(flow)

    return target


def _flowline() -> Callable[[bytes], None]:
    from hubblepy.codec import DecodeError, ResponseDecoder, encode

    decoder = ResponseDecoder(on_unknown_field=lambda _message: None)

    def target(data: bytes) -> None:
        line = data.split(b"\n", 1)[0]
        try:
            response = decoder.decode(line)
        except DecodeError:
            return
        encode(response)

    return target


def _policy() -> Callable[[bytes], None]:
    from hubblepy.policy.parse import PolicyError, parse_policies

    def target(data: bytes) -> None:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return  # the loader reads files as UTF-8 text; undecodable bytes never reach it
        try:
            parse_policies(text, "fuzz.yaml")
        except PolicyError:
            return

    return target


def _dnsquery() -> Callable[[bytes], None]:
    from hubblepy.proxy.dns_wire import (
        RCODE_REFUSED,
        Malformed,
        WireCache,
        dnspython_answer,
        dnspython_query,
        fast_answer,
        fast_query,
        parse_answer,
        parse_query,
    )

    cache = WireCache(size=256)

    def same_as_dnspython(fast: object, slow: Callable[[bytes], object], data: bytes, what: str) -> None:
        if fast is None:
            return
        try:
            reference = slow(data)
        except Malformed as exc:
            raise AssertionError(f"the short reader accepts the {what} dnspython refuses: {exc}") from None
        if reference != fast:
            raise AssertionError(f"{what}: short reader {fast} != dnspython {reference}")

    def target(data: bytes) -> None:
        same_as_dnspython(fast_query(data), dnspython_query, data, "query")
        same_as_dnspython(fast_answer(data), dnspython_answer, data, "answer")
        try:
            query = parse_query(data)
        except Malformed:
            query = None
        if query is not None:
            if cache.query(data) != query:
                raise AssertionError("the memoized parse differs from the parse")
            reply = cache.error_reply(data, RCODE_REFUSED)
            if reply[:2] != data[:2]:
                raise AssertionError("the REFUSED reply lost the query's ID")
            answer = parse_answer(reply)
            if answer.rcode != RCODE_REFUSED or answer.name != query.name or answer.ips:
                raise AssertionError(f"the REFUSED reply reads back as {answer}")
        try:
            parse_answer(data)
        except Malformed:
            return

    return target


TARGETS: dict[str, Callable[[], Callable[[bytes], None]]] = {
    "datapath": _datapath,
    "flowline": _flowline,
    "policy": _policy,
    "dnsquery": _dnsquery,
}
