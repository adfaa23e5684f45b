"""The HTTP proxy as a real process on loopback: policy per request, HTTP/1.1 details, errors, access log."""

from __future__ import annotations

import json
import socket
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proxytools import ADMIN_IP, SEED, Harness, Reader  # noqa: E402

GET_ORDERS = b"GET /api/v1/orders HTTP/1.1\r\nHost: api:8080\r\n\r\n"
POST_ORDERS = b"POST /api/v1/orders HTTP/1.1\r\nHost: api:8080\r\nContent-Length: 2\r\n\r\n{}"


@pytest.fixture
def proxy(tmp_path):
    harness = Harness(tmp_path)
    yield harness
    harness.close()


def test_get_allowed_post_denied_and_the_connection_stays_usable(proxy: Harness) -> None:
    with proxy.connect() as sock:
        reader = Reader(sock)
        sock.sendall(GET_ORDERS)
        status, _, body = reader.response()
        assert status == 200 and json.loads(body)["method"] == "GET"
        sock.sendall(POST_ORDERS)
        status, headers, body = reader.response()
        assert (status, body) == (403, b"Access denied\r\n")
        assert headers.get("connection") != "close"
        sock.sendall(GET_ORDERS.replace(b"/api/v1/orders", b"/healthz"))
        assert reader.response()[0] == 200
        sock.sendall(GET_ORDERS.replace(b"/api/v1/orders", b"/api/v1/orders/1"))
        assert reader.response()[0] == 403


def test_pipelined_requests_are_answered_in_order(proxy: Harness) -> None:
    with proxy.connect() as sock:
        reader = Reader(sock)
        sock.sendall(
            GET_ORDERS
            + POST_ORDERS
            + GET_ORDERS
            + b"DELETE /healthz HTTP/1.1\r\nHost: api\r\n\r\n"
            + GET_ORDERS
        )
        statuses = [reader.response()[0] for _ in range(5)]
        assert statuses == [200, 403, 200, 403, 200]


def test_last_response_before_a_close_arrives_whole(proxy: Harness) -> None:
    # the proxy's response writes wait for the end of its event-loop pass: a close (the client's
    # "Connection: close") must still come after every byte of them, after a 403 in between too
    last = GET_ORDERS.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
    with proxy.connect() as sock:
        reader = Reader(sock)
        sock.sendall(GET_ORDERS + POST_ORDERS + last)
        answers = [reader.response() for _ in range(3)]
        assert [status for status, _, _ in answers] == [200, 403, 200]
        assert json.loads(answers[0][2])["method"] == "GET" and json.loads(answers[2][2])["method"] == "GET"
        assert reader.buf == b"" and reader.closed()


def test_access_log_records_for_allowed_and_denied_requests(proxy: Harness) -> None:
    with proxy.connect() as sock:
        reader = Reader(sock)
        sock.sendall(GET_ORDERS)
        reader.response()
        sock.sendall(POST_ORDERS)
        reader.response()
    records = proxy.wait_records(4)
    assert [(r["Type"], r["Verdict"], r["HTTP"]["Method"], r["HTTP"]["Code"]) for r in records] == [
        ("Request", "Forwarded", "GET", 0),
        ("Response", "Forwarded", "GET", 200),
        ("Request", "Denied", "POST", 0),
        ("Response", "Forwarded", "POST", 403),
    ]
    request, response = records[2], records[3]
    assert request["ObservationPoint"] == "Ingress"
    assert request["SourceEndpoint"]["Identity"] == proxy.identities["frontend"]
    assert request["DestinationEndpoint"]["Identity"] == proxy.identities["api"]
    assert request["DestinationEndpoint"]["ID"] == 101
    assert "k8s:app=frontend" in request["SourceEndpoint"]["Labels"]
    assert request["DestinationAddress"].endswith(f":{proxy.server_port}")
    assert response["SourceEndpoint"] == request["DestinationEndpoint"]  # a response goes server -> client
    url = request["HTTP"]["URL"]
    assert (url["Scheme"], url["Host"], url["Path"]) == ("http", "api:8080", "/api/v1/orders")
    assert request["HTTP"]["Protocol"] == "HTTP/1.1"
    request_id = request["HTTP"]["Headers"]["X-Request-Id"]
    assert response["HTTP"]["Headers"]["X-Request-Id"] == request_id
    ext = request["hubblepy"]
    assert [p["name"] for p in ext["denied_by"]] == ["api-http-l7"]
    assert ext["policy_log"] == [
        "deny: no L7 rule of [CiliumNetworkPolicy payments/api-http-l7 spec.ingress[0]] allows POST /api/v1/orders"
    ]
    allowed = records[0]["hubblepy"]
    assert [p["name"] for p in allowed["allowed_by"]] == ["api-http-l7"]
    assert allowed["policy_log"] == ["allow: CiliumNetworkPolicy payments/api-http-l7 spec.ingress[0]"]


def test_access_log_lines_carry_the_correlation_the_node_would_work_out(proxy: Harness) -> None:
    """The proxy correlates its records itself (X-Request-Id, traceparent): the same (latency,
    trace ID) as the node's parser gives the records read in order, for the proxy's own request
    ids, a client's (repeated, several with an empty one first), a valid traceparent and a 403 answered by the proxy."""
    from hubblepy.parser.flows import Parser
    from hubblepy.parser.seven import SevenParser

    trace = "00-" + "5c" * 16 + "-00f067aa0ba902b7-01"
    with proxy.connect() as sock:
        reader = Reader(sock)
        for request in (
            GET_ORDERS,
            GET_ORDERS.replace(
                b"\r\n\r\n", b"\r\nX-Request-Id: client-1\r\nTraceparent: %b\r\n\r\n" % trace.encode()
            ),
            POST_ORDERS.replace(
                b"Content-Length",
                b"X-Request-Id: \r\nx-request-id: first\r\nX-Request-Id: second\r\nContent-Length",
            ),
            GET_ORDERS.replace(b"\r\n\r\n", b"\r\nX-Request-Id: client-1\r\n\r\n"),
        ):
            sock.sendall(request)
            reader.response()
    records = proxy.wait_records(8)
    assert len(records) == 8 and None not in proxy.correlations
    seven = SevenParser(Parser(None, "node"))
    assert proxy.correlations == [seven.correlate(record) for record in records]
    assert [c[0] > 0 for c in proxy.correlations] == [False, True] * 4
    assert proxy.correlations[2][1] == proxy.correlations[3][1] == "5c" * 16
    assert records[4]["HTTP"]["Headers"]["X-Request-Id"] == ["", "first", "second"]
    assert records[5]["HTTP"]["Headers"]["X-Request-Id"] == ["first"]  # the 403's


def test_absolute_form_target_is_judged_and_sent_in_origin_form(proxy: Harness) -> None:
    with proxy.connect() as sock:
        reader = Reader(sock)
        sock.sendall(b"GET http://api:8080/api/v1/orders HTTP/1.1\r\nHost: elsewhere\r\n\r\n")
        status, _, body = reader.response()
        assert status == 200 and json.loads(body)["path"] == "/api/v1/orders"
    record = proxy.wait_records(1)[0]
    assert record["HTTP"]["URL"]["Host"] == "api:8080"


def test_fifty_megabyte_chunked_upload_streams_with_bounded_memory(proxy: Harness) -> None:
    size = 50 * 1024 * 1024
    chunk = b"x" * (256 * 1024)
    before = proxy.peak_rss_kb()
    with proxy.connect(ADMIN_IP, timeout=60) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: api\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(size // len(chunk)):
            sock.sendall(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        sock.sendall(b"0\r\n\r\n")
        status, _, body = Reader(sock).response()
    assert status == 201
    assert json.loads(body)["received"] == size
    growth_mb = (proxy.peak_rss_kb() - before) / 1024
    assert growth_mb < 16, f"proxy peak memory grew by {growth_mb:.1f} MB for a 50 MB upload"


def test_expect_continue_passes_through_and_a_refused_one_gets_403_without_the_body(proxy: Harness) -> None:
    with proxy.connect(ADMIN_IP) as sock:
        reader = Reader(sock)
        sock.sendall(
            b"POST /upload HTTP/1.1\r\nHost: api\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        assert reader.response()[0] == 100
        sock.sendall(b"hello")
        status, _, body = reader.response()
        assert status == 201 and json.loads(body)["received"] == 5
    with proxy.connect() as sock:
        reader = Reader(sock)
        sock.sendall(
            b"POST /api/v1/orders HTTP/1.1\r\nHost: api\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        status, headers, _ = reader.response()
        assert status == 403 and headers["connection"] == "close"
        assert reader.closed()


def test_upgrade_and_connect_are_refused(proxy: Harness) -> None:
    with proxy.connect(ADMIN_IP) as sock:
        reader = Reader(sock)
        sock.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: api\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
        )
        assert reader.response()[0] == 403
        assert reader.closed()
    with proxy.connect(ADMIN_IP) as sock:
        sock.sendall(b"CONNECT api:443 HTTP/1.1\r\nHost: api:443\r\n\r\n")
        assert Reader(sock).response()[0] == 403


def test_malformed_request_gets_400_and_others_keep_working(proxy: Harness) -> None:
    with proxy.connect() as other:
        other_reader = Reader(other)
        with proxy.connect() as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: api\r\nBad Header\r\n\r\n")
            reader = Reader(sock)
            assert reader.response()[0] == 400
            assert reader.closed()
        with proxy.connect() as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")  # HTTP/1.1 without Host
            assert Reader(sock).response()[0] == 400
        other.sendall(GET_ORDERS)
        assert other_reader.response()[0] == 200
    assert proxy.proc.poll() is None


def test_header_timeout_gets_408(tmp_path) -> None:
    harness = Harness(tmp_path, header_timeout="0.5")
    try:
        with harness.connect() as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: api\r\n")
            reader = Reader(sock)
            assert reader.response()[0] == 408
            assert reader.closed()
    finally:
        harness.close()


def test_unreachable_upstream_gets_503(tmp_path) -> None:
    harness = Harness(tmp_path)
    try:
        harness.server.shutdown()
        harness.server.server_close()
        harness.server = _Noop()
        with harness.connect() as sock:
            reader = Reader(sock)
            sock.sendall(GET_ORDERS)
            status, _, body = reader.response()
            assert status == 503 and b"upstream connect error" in body
            sock.sendall(GET_ORDERS)  # the client connection survives
            assert reader.response()[0] == 503
        records = harness.wait_records(2)
        assert records[1]["Type"] == "Response" and records[1]["Verdict"] == "Error"
    finally:
        harness.close()


class _Noop:
    def shutdown(self) -> None:
        pass

    def server_close(self) -> None:
        pass


def test_rules_reload_on_sighup_and_no_rule_set_fails_closed(proxy: Harness) -> None:
    allow_post = SEED.replace(
        '              - method: "GET"\n                path: "/healthz"\n',
        '              - method: "POST"\n',
    )
    proxy.write_state(allow_post)
    proxy.reload()
    with proxy.connect() as sock:
        reader = Reader(sock)
        sock.sendall(POST_ORDERS)
        assert reader.response()[0] == 201
    proxy.write_state(None)  # no policy at all: nothing is redirected, so the proxy refuses
    proxy.reload()
    with proxy.connect(ADMIN_IP) as sock:
        sock.sendall(GET_ORDERS)
        assert Reader(sock).response()[0] == 403
    record = proxy.wait_records(4)[-2]
    assert record["hubblepy"]["policy_log"] == ["deny: no L7 policy for this connection (fail closed)"]


def test_no_state_file_refuses_everything(tmp_path) -> None:
    harness = Harness(tmp_path)
    try:
        harness.stop()
        harness.state_path.unlink()
        harness.start()
        with harness.connect(ADMIN_IP) as sock:
            sock.sendall(GET_ORDERS)
            assert Reader(sock).response()[0] == 403
    finally:
        harness.close()


def test_idle_keep_alive_connection_is_closed(tmp_path) -> None:
    harness = Harness(tmp_path, idle_timeout="0.5")
    try:
        with harness.connect() as sock:
            reader = Reader(sock)
            sock.sendall(GET_ORDERS)
            assert reader.response()[0] == 200
            assert reader.closed(timeout=30)  # the proxy closes it, not the test's timeout
    finally:
        harness.close()


def _accept_one(port_holder: list[int], ready: threading.Event) -> socket.socket:
    """A server's one connection: listens on a free port of 127.0.0.2 (appended to ``port_holder``,
    then ``ready`` is set) and returns the first connection."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.2", 0))
        listener.listen(1)
        port_holder.append(listener.getsockname()[1])
        ready.set()
        conn, _ = listener.accept()
    return conn


def _upgrade_server(port_holder: list[int], ready: threading.Event) -> None:
    """Answers one upgrade with 101, then echoes what it reads (a tunnel)."""
    with _accept_one(port_holder, ready) as conn:
        head = b""
        while b"\r\n\r\n" not in head:
            head += conn.recv(4096)
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
        while data := conn.recv(4096):
            conn.sendall(data.upper())


def test_allowed_upgrade_becomes_a_tunnel(tmp_path) -> None:
    port: list[int] = []
    ready = threading.Event()
    threading.Thread(target=_upgrade_server, args=(port, ready), daemon=True).start()
    ready.wait(5)
    harness = Harness(tmp_path, target_port=port[0], allow_upgrade="websocket")
    try:
        with harness.connect(ADMIN_IP) as sock:
            sock.sendall(
                b"GET /healthz HTTP/1.1\r\nHost: api\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
            )
            reader = Reader(sock)
            assert reader.response()[0] == 101
            sock.sendall(b"hello tunnel")
            got = reader.buf
            while len(got) < 12:
                got += sock.recv(100)
            assert got == b"HELLO TUNNEL"
        records = harness.wait_records(2)
        assert [(r["Type"], r["HTTP"]["Code"]) for r in records] == [("Request", 0), ("Response", 101)]
    finally:
        harness.close()


EGRESS_GET_ONLY = """\
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: frontend-get
  namespace: payments
spec:
  endpointSelector:
    matchLabels:
      app: frontend
  egress:
    - toEndpoints:
        - matchLabels:
            app: api
      toPorts:
        - ports:
            - port: "{port}"
              protocol: TCP
          rules:
            http:
              - method: "GET"
"""


def test_egress_and_ingress_rule_sets_both_judge_and_log(tmp_path) -> None:
    harness = Harness(tmp_path, policy=SEED + EGRESS_GET_ONLY, local_client=True)
    try:
        with harness.connect() as sock:
            reader = Reader(sock)
            sock.sendall(GET_ORDERS)
            assert reader.response()[0] == 200
            sock.sendall(POST_ORDERS)  # the frontend's egress rules refuse it first
            assert reader.response()[0] == 403
        records = harness.wait_records(5)
        summary = [(r["Type"], r["ObservationPoint"], r["Verdict"]) for r in records]
        assert summary[:2] == [("Request", "Egress", "Forwarded"), ("Request", "Ingress", "Forwarded")]
        assert ("Request", "Egress", "Denied") in summary
        assert ("Request", "Ingress", "Denied") not in summary
        denied = next(r for r in records if r["Verdict"] == "Denied")
        assert [p["name"] for p in denied["hubblepy"]["denied_by"]] == ["frontend-get"]
    finally:
        harness.close()


def test_head_response_without_body_then_the_next_request(tmp_path) -> None:
    """HEAD's response has a Content-Length but no body: the proxy must not wait for one."""
    policy = SEED.replace(
        'method: "GET"\n                path: "/healthz"',
        'method: "GET|HEAD"\n                path: "/healthz"',
    )
    harness = Harness(tmp_path, policy=policy)
    try:
        with harness.connect() as sock:
            sock.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: api\r\n\r\n")
            data = b""
            while b"\r\n\r\n" not in data:
                data += sock.recv(4096)
            head, _, rest = data.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200") and b"Content-Length" in head and rest == b""
            reader = Reader(sock)
            sock.sendall(GET_ORDERS)
            assert reader.response()[0] == 200
    finally:
        harness.close()


def _echo_id_server(port_holder: list[int], ready: threading.Event) -> None:
    """Answers every request of one keep-alive connection, echoing its first X-Request-Id (as
    servers in a mesh do) in the middle of its headers."""
    with _accept_one(port_holder, ready) as conn:
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                data = conn.recv(4096)
                if not data:
                    return
                buf += data
            head, _, buf = buf.partition(b"\r\n\r\n")
            ids = [
                line.split(b":", 1)[1].strip()
                for line in head.split(b"\r\n")[1:]
                if line.lower().startswith(b"x-request-id:")
            ]
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Request-Id: %b\r\nContent-Type: text/plain\r\n\r\nok"
                % ids[0]
            )


def test_correlation_with_a_server_that_echoes_the_request_id(tmp_path) -> None:
    """Responses that carry their own X-Request-Id (echoed by the server, not added by the proxy):
    the lines' correlation is still the node's, and each response's headers are the server's."""
    from hubblepy.parser.flows import Parser
    from hubblepy.parser.seven import SevenParser

    port: list[int] = []
    ready = threading.Event()
    threading.Thread(target=_echo_id_server, args=(port, ready), daemon=True).start()
    ready.wait(5)
    harness = Harness(tmp_path, target_port=port[0])
    try:
        with harness.connect() as sock:
            reader = Reader(sock)
            for request in (
                GET_ORDERS,
                GET_ORDERS.replace(b"\r\n\r\n", b"\r\nX-Request-Id: mine\r\n\r\n"),
                GET_ORDERS,
            ):
                sock.sendall(request)
                assert reader.response()[0] == 200
        records = harness.wait_records(6)
        assert len(records) == 6 and None not in harness.correlations
        seven = SevenParser(Parser(None, "node"))
        assert harness.correlations == [seven.correlate(record) for record in records]
        assert [c[0] > 0 for c in harness.correlations] == [False, True] * 3
        responses = [r["HTTP"]["Headers"] for r in records[1::2]]
        assert [list(h) for h in responses] == [["Content-Length", "X-Request-Id", "Content-Type"]] * 3
        assert responses[1]["X-Request-Id"] == ["mine"]
        assert responses[0]["X-Request-Id"] != responses[2]["X-Request-Id"]
    finally:
        harness.close()


def test_request_ids_are_the_prefix_and_the_counter_in_eight_hex_digits() -> None:
    """The proxy's own X-Request-Ids: version-4 UUID text, the last 8 digits counting up (across
    the table's 4096 steps and the 32-bit wrap)."""
    import re
    import uuid

    from hubblepy.proxy.http import Options, ProxyServer

    server = ProxyServer(Options(), None, None)
    ids = [server.request_id() for _ in range(3 * 4096 + 5)]
    assert ids == [f"{server._id_prefix}{n:08x}" for n in range(1, len(ids) + 1)]
    assert all(uuid.UUID(i).version == 4 for i in ids[:3]) and re.fullmatch(r"[0-9a-f-]{36}", ids[-1])
    server._id_counter, server._id_high = 0xFFFFFFFE, ""
    assert [server.request_id()[-8:] for _ in range(3)] == ["ffffffff", "00000000", "00000001"]
