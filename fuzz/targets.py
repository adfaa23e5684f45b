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
* ``httprequest``: the HTTP proxy's client side (:class:`hubblepy.proxy.http.ClientConnection`,
  httptools underneath) over one client byte stream fed in up to three pieces, judged by L7 rules
  with method, path, host and header matches and writing access-log records. Whatever it writes
  back must be whole HTTP responses (403, 400, 408, ...), nothing after it closed; the counters
  stay consistent. Allowed requests go to an upstream on loopback that refuses.
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


def _httprequest() -> Callable[[bytes], None]:
    import asyncio
    import socket

    import httptools
    import orjson

    from hubblepy.policy.l7 import Contribution, HeaderMatch, HTTPRule, L7Table
    from hubblepy.policy.model import INGRESS
    from hubblepy.proxy import accesslog, http
    from hubblepy.proxy.state import parse_state, state_to_json

    with socket.socket() as s:  # a loopback port nothing listens on: allowed requests are refused
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    rules = (
        HTTPRule(method="GET", path="/api/v1/.*"),
        HTTPRule(method="POST", path="/api/v1/orders", headers=(HeaderMatch("X-Token", "secret"),)),
        HTTPRule(
            host="api[.].*", headers=(HeaderMatch("X-Trace", "1", "ADD"), HeaderMatch("X-Drop", "", "DELETE"))
        ),
    )
    table = L7Table({(2, INGRESS): [Contribution(256, closed_port, 0, 6, rules, 5)]})
    document = state_to_json(
        revision=1,
        l7=table,
        rules={
            5: {
                "policy": {"name": "fuzz", "namespace": "fuzz", "kind": "CiliumNetworkPolicy"},
                "rule": "fuzz",
            }
        },
        endpoints=[(1, "10.0.0.1", 256), (2, "127.0.0.1", 257)],
        ipcache=[],
        identities={256: ["k8s:app=client"], 257: ["k8s:app=server"]},
        node={"name": "fuzz-node"},
        proxy_port=15001,
    )
    state = parse_state(orjson.dumps(document))
    loop = asyncio.new_event_loop()
    log = accesslog.AccessLogWriter("/nonexistent/hubblepy-fuzz.sock", max_buffer=1 << 16, delay=3600)
    server = http.ProxyServer(http.Options(upstream=("127.0.0.1", closed_port)), state, log)

    class Transport(asyncio.Transport):
        """The client's side of the connection, in memory: what the proxy writes back."""

        def __init__(self) -> None:
            super().__init__()
            self.written: list[bytes] = []
            self.closing = False
            self.late = False

        def get_extra_info(self, name: str, default: object = None) -> object:
            return {"peername": ("10.0.0.1", 40000), "sockname": ("127.0.0.1", closed_port)}.get(
                name, default
            )

        def write(self, data: bytes | bytearray | memoryview) -> None:
            if self.closing:
                self.late = True
            self.written.append(bytes(data))

        def close(self) -> None:
            self.closing = True

        def is_closing(self) -> bool:
            return self.closing

        def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
            pass

        def pause_reading(self) -> None:
            pass

        def resume_reading(self) -> None:
            pass

    class Responses:
        """httptools' response parser callbacks: counts whole responses."""

        def __init__(self) -> None:
            self.complete = 0
            self.started = 0

        def on_message_begin(self) -> None:
            self.started += 1

        def on_message_complete(self) -> None:
            self.complete += 1

    async def feed(data: bytes) -> Transport:
        transport = Transport()
        conn = http.ClientConnection(server)
        conn.connection_made(transport)
        cut1 = data[0] if data else 0
        cut2 = cut1 + (data[1] if len(data) > 1 else 0)
        body = data[2:]
        for piece in (body[:cut1], body[cut1:cut2], body[cut2:]):
            if piece and not conn.closed:
                conn.data_received(piece)
        if not conn.closed:
            conn.eof_received()
        conn.connection_lost(None)
        return transport

    def target(data: bytes) -> None:
        requests, denied = server.stats["requests"], server.stats["denied"]
        transport = loop.run_until_complete(feed(data))
        for task in asyncio.all_tasks(loop):  # an allowed request's upstream connection: not needed
            task.cancel()
        loop.run_until_complete(asyncio.sleep(0))
        if transport.late:
            raise AssertionError("the proxy wrote to the client after closing the connection")
        if server.stats["denied"] - denied > server.stats["requests"] - requests:
            raise AssertionError("more requests denied than received")
        answer = b"".join(transport.written)
        if not answer:
            return
        responses = Responses()
        parser = httptools.HttpResponseParser(responses)
        try:
            parser.feed_data(answer)
        except httptools.HttpParserError as exc:
            raise AssertionError(f"the proxy wrote a malformed response: {exc}: {answer[:200]!r}") from None
        if responses.complete != responses.started:
            raise AssertionError(f"the proxy wrote an incomplete response: {answer[-200:]!r}")

    return target


TARGETS: dict[str, Callable[[], Callable[[bytes], None]]] = {
    "datapath": _datapath,
    "flowline": _flowline,
    "policy": _policy,
    "dnsquery": _dnsquery,
    "httprequest": _httprequest,
}
