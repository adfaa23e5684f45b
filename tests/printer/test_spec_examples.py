"""Hand-made inputs for upstream hubble 1.19's output corner cases, printed and compared byte for byte."""

from __future__ import annotations

import orjson

from hubblepy.printer import PrintOptions

ESC = "\x1b"


def _flow(time: str, **fields: object) -> dict:
    flow = {"time": time, **fields}
    return {"flow": flow, "time": time}


def _pod(identity: int, namespace: str, pod: str) -> dict:
    return {"identity": identity, "namespace": namespace, "pod_name": pod}


WEB = _pod(4242, "shop", "web-1")
DB = _pod(4343, "shop", "db-0")
IPV4 = {"source": "10.1.0.5", "destination": "10.1.0.6", "ipVersion": "IPv4"}


def _odd(time: str, event_type: dict, **fields: object) -> dict:
    base = {
        "verdict": "TRACED",
        "IP": IPV4,
        "source": WEB,
        "destination": DB,
        "node_name": "lab-worker",
        "event_type": event_type,
        "Summary": "x",
    }
    base.update(fields)
    return _flow(time, **base)


def test_service_namespace_names_list_and_empty_host(stdout_of) -> None:
    records = [
        _flow(
            "2024-07-04T12:00:07Z",
            verdict="FORWARDED",
            IP=IPV4,
            l4={"TCP": {"source_port": 1234, "destination_port": 80}},
            source=WEB,
            destination={"identity": 2},
            event_type={"type": 4, "sub_type": 5},
            source_service={"name": "websvc", "namespace": "other"},
            destination_service={"name": "frontdoor"},
            Summary="TCP Flags: PSH",
        ),
        _flow(
            "2024-07-04T12:00:06Z",
            verdict="FORWARDED",
            IP={"source": "10.1.0.5", "destination": "fd00::53", "ipVersion": "IPv6"},
            l4={"UDP": {"source_port": 40000, "destination_port": 53}},
            source=WEB,
            destination={"identity": 10},
            destination_names=["ns1.example.org", "ns2.example.org"],
            event_type={"type": 4, "sub_type": 11},
            is_reply=True,
            Summary="UDP",
        ),
        _flow("2024-07-04T12:00:05Z", verdict="FORWARDED", Summary="bare"),
    ]
    assert stdout_of(PrintOptions(), records) == (
        "Jul  4 12:00:07.000: other/web-1:1234 (ID:4242) <> frontdoor:80 (world) from-endpoint FORWARDED (TCP Flags: PSH)\n"
        "Jul  4 12:00:06.000: ns1.example.org,ns2.example.org:53 (world-ipv6) <- shop/web-1:40000 (ID:4242) to-network FORWARDED (UDP)\n"
        "Jul  4 12:00:05.000:  (unknown) <>  (unknown) UNKNOWN FORWARDED (bare)\n"
    )


def test_mac_fallback_ipv6_brackets_and_numeric(stdout_of) -> None:
    mac = _flow(
        "2024-03-01T00:01:45.340Z",
        verdict="DROPPED",
        ethernet={"source": "02:42:ac:12:00:04", "destination": "01:80:c2:00:00:0e"},
        l4={"TCP": {"source_port": 1, "destination_port": 2}},
        event_type={"type": 1, "sub_type": 139},
    )
    v6 = _flow(
        "2024-02-29T23:57:56.836Z",
        verdict="FORWARDED",
        IP={"source": "fd00:10:244:1::1e", "destination": "2a00:1450:4001:82a::2004", "ipVersion": "IPv6"},
        l4={"TCP": {"source_port": 34281, "destination_port": 443}},
        source=_pod(61447, "default", "frontend"),
        destination={"identity": 10},
        destination_names=["www.google.com"],
        event_type={"type": 5},
        traffic_direction="EGRESS",
        policy_match_type=2,
        is_reply=False,
        Summary="TCP Flags: SYN",
    )
    assert stdout_of(PrintOptions(numeric=True), [mac, v6]) == (
        "Mar  1 00:01:45.340: 02:42:ac:12:00:04 (unknown) <> 01:80:c2:00:00:0e (unknown) Unsupported L3 protocol DROPPED ()\n"
        "Feb 29 23:57:56.836: [fd00:10:244:1::1e]:34281 (ID:61447) -> [2a00:1450:4001:82a::2004]:443 (world-ipv6) policy-verdict:L3-L4 EGRESS ALLOWED (TCP Flags: SYN)\n"
    )
    coloured = stdout_of(PrintOptions(numeric=True, color=True), [mac, v6]).splitlines()
    assert coloured[0].startswith(
        f"Mar  1 00:01:45.340: {ESC}[36m02:42:ac:12:00:04{ESC}[0m {ESC}[35m(unknown){ESC}[0m <> "
    )
    assert f"{ESC}[36m[fd00:10:244:1::1e]:{ESC}[33m34281{ESC}[0m{ESC}[0m" in coloured[1]


def test_ports_only_for_tcp_udp_sctp_and_nonzero(stdout_of) -> None:
    def flow(l4: dict) -> dict:
        return _flow("2024-07-04T12:00:00Z", IP=IPV4, l4=l4, Summary="s")

    lines = stdout_of(
        PrintOptions(numeric=True),
        [
            flow({"SCTP": {"source_port": 5, "destination_port": 6}}),
            flow({"ICMPv4": {"type": 8}}),
            flow({"TCP": {"destination_port": 443}}),
            flow({"UDP": {}}),
        ],
    ).splitlines()
    hosts = [line.split(": ", 1)[1].split(" UNKNOWN")[0] for line in lines]
    assert hosts == [
        "10.1.0.5:5 (unknown) <> 10.1.0.6:6 (unknown)",
        "10.1.0.5 (unknown) <> 10.1.0.6 (unknown)",
        "10.1.0.5 (unknown) <> 10.1.0.6:443 (unknown)",
        "10.1.0.5 (unknown) <> 10.1.0.6 (unknown)",
    ]


def test_identities(stdout_of) -> None:
    names = []
    for identity in (0, 1, 3, 5, 6, 8, 9, 11, 100, 16777217):
        record = _flow("2024-07-04T12:00:00Z", source={"identity": identity}, Summary="")
        line = stdout_of(PrintOptions(), [record])
        names.append(line.split(" <> ")[0].split(": ", 1)[1].strip())
    assert names == [
        "(unknown)",
        "(host)",
        "(unmanaged)",
        "(init)",
        "(remote-node)",
        "(ingress)",
        "(world-ipv4)",
        "(ID:11)",
        "(ID:100)",
        "(ID:16777217)",
    ]


def test_odd_event_types(stdout_of) -> None:
    records = [
        _odd("2024-07-04T12:00:08.100Z", {"type": 4, "sub_type": 14}),
        _odd("2024-07-04T12:00:08.200Z", {"type": 1, "sub_type": 250}),
        _odd("2024-07-04T12:00:08.300Z", {"type": 5}, policy_match_type=9),
        _odd("2024-07-04T12:00:08.500Z", {"type": 7}),
        _odd("2024-07-04T12:00:08.600Z", {"type": 130}),
        _odd(
            "2024-07-04T12:00:10.200Z",
            {"type": 129},
            verdict="FORWARDED",
            l7={"type": "RESPONSE", "dns": {"query": "a."}},
            Summary="d",
        ),
        _odd(
            "2024-07-04T12:00:15Z",
            {"type": 5},
            verdict="DROPPED",
            l4={"TCP": {}},
            is_reply=False,
            egress_denied_by=[{"name": "p", "kind": "NetworkPolicy"}],
            Summary="TCP Flags: SYN",
        ),
        {"flow": {"uuid": "a", "Summary": "A"}},
    ]
    assert stdout_of(PrintOptions(print_node_name=True, print_policy_names=True), records) == (
        "Jul  4 12:00:08.100 [lab-worker]: shop/web-1 (ID:4242) <> shop/db-0 (ID:4343) 14 TRACED (x)\n"
        "Jul  4 12:00:08.200 [lab-worker]: shop/web-1 (ID:4242) <> shop/db-0 (ID:4343) 250, 0 TRACED (x)\n"
        "Jul  4 12:00:08.300 [lab-worker]: shop/web-1 (ID:4242) <> shop/db-0 (ID:4343) policy-verdict:unknown TRAFFIC_DIRECTION_UNKNOWN TRACED (x)\n"
        "Jul  4 12:00:08.500 [lab-worker]: shop/web-1 (ID:4242) <> shop/db-0 (ID:4343) SOCK_XLATE_POINT_UNKNOWN TRACED (x)\n"
        "Jul  4 12:00:08.600 [lab-worker]: shop/web-1 (ID:4242) <> shop/db-0 (ID:4343) UNKNOWN TRACED (x)\n"
        "Jul  4 12:00:10.200 [lab-worker]: shop/web-1 (ID:4242) <> shop/db-0 (ID:4343) dns-response  FORWARDED (d)\n"
        "Jul  4 12:00:15.000 [lab-worker]: shop/web-1 (ID:4242) -> shop/db-0 (ID:4343) policy-verdict:none TRAFFIC_DIRECTION_UNKNOWN DENIED (TCP Flags: SYN)\n"
        "N/A []:  (unknown) <>  (unknown) UNKNOWN VERDICT_UNKNOWN (A)\n"
    )


def _type_of(stdout_of, event_type: dict | None = None, **fields: object) -> str:
    line = stdout_of(PrintOptions(), [_odd("2024-07-04T12:00:00Z", event_type or {}, **fields)])
    return line.split("(ID:4343) ", 1)[1].rsplit(" TRACED", 1)[0]


def test_type_column_rules(stdout_of) -> None:
    assert _type_of(stdout_of, event_type={"type": 4, "sub_type": 261}) == "from-endpoint"
    assert _type_of(stdout_of, event_type={"type": 4}) == "to-endpoint"
    assert _type_of(stdout_of, event_type={"type": 4, "sub_type": 255}) == "255"
    assert _type_of(stdout_of, event_type={"type": 1, "sub_type": 136}) == "Fragmentation needed"
    assert _type_of(stdout_of, event_type={"type": 1, "sub_type": 159}) == "159, 0"
    assert _type_of(stdout_of, event_type={"type": 1, "sub_type": 2}) == "Invalid packet"
    assert _type_of(stdout_of, event_type={"type": 1}) == "Success"
    assert _type_of(stdout_of, event_type={"type": 1, "sub_type": 189}) == "Authentication required"
    assert _type_of(stdout_of, event_type={"type": 3}) == "DBG_CAPTURE_POINT_UNKNOWN"
    assert _type_of(stdout_of, event_type={"type": 3}, debug_capture_point=99) == "99"
    assert (
        _type_of(stdout_of, event_type={"type": 3}, debug_capture_point="DBG_CAPTURE_FROM_LB")
        == "DBG_CAPTURE_FROM_LB"
    )
    assert (
        _type_of(stdout_of, event_type={"type": 7}, sock_xlate_point="SOCK_XLATE_POINT_POST_DIRECTION_REV")
        == "post-xlate-rev"
    )
    assert _type_of(stdout_of, event_type={"type": 7}, sock_xlate_point=9) == "9"
    assert (
        _type_of(stdout_of, event_type={"type": 5}, policy_match_type=6, traffic_direction=7)
        == "policy-verdict:Proto-Only 7"
    )
    assert _type_of(stdout_of, event_type={"type": 2}) == "UNKNOWN"
    assert _type_of(stdout_of, event_type={"type": 129}) == "UNKNOWN"
    assert _type_of(stdout_of, event_type={"type": 4}, l7={}) == "l7-unknown_l7_type"
    assert _type_of(stdout_of, event_type={"type": 4}, l7={"type": "SAMPLE", "http": {}}) == "http-sample"
    assert _type_of(stdout_of, l7={"kafka": {}}) == "kafka-unknown_l7_type"
    assert _type_of(stdout_of, l7={"type": "REQUEST", "dns": {"observation_source": "proxy"}}) == (
        "dns-request proxy"
    )
    assert _type_of(stdout_of, l7={"type": 9}) == "l7-9"


def test_policy_names_auth_and_trace_id(stdout_of) -> None:
    record = _odd(
        "2024-07-04T12:00:13Z",
        {"type": 5},
        verdict="FORWARDED",
        auth_type="TEST_ALWAYS_FAIL",
        l4={"TCP": {}},
        is_reply=False,
        traffic_direction="EGRESS",
        policy_match_type=3,
        ip_trace_id={"trace_id": "9"},
        egress_allowed_by=[
            {"name": "a", "kind": "NetworkPolicy"},
            {"namespace": "shop", "kind": "NetworkPolicy"},
            {"name": "b", "namespace": "shop", "revision": "3", "kind": "CiliumNetworkPolicy"},
        ],
        ingress_allowed_by=[{"name": "wrong-direction", "kind": "NetworkPolicy"}],
        Summary="TCP Flags: SYN",
    )
    expected = (
        "Jul  4 12:00:13.000: shop/web-1 (ID:4242) -> shop/db-0 (ID:4343) policy-verdict:L4-Only EGRESS "
        "ALLOWED BY a (NetworkPolicy), b (CiliumNetworkPolicy) (IP Trace ID: 9; TCP Flags: SYN; Auth: TEST_ALWAYS_FAIL)\n"
    )
    assert stdout_of(PrintOptions(print_policy_names=True), [record]) == expected
    assert stdout_of(PrintOptions(), [record]) == expected.replace(
        " BY a (NetworkPolicy), b (CiliumNetworkPolicy)", ""
    )
    coloured = stdout_of(PrintOptions(print_policy_names=True, color=True), [record])
    assert f"{ESC}[32mALLOWED BY a (NetworkPolicy), b (CiliumNetworkPolicy){ESC}[0m" in coloured
    assert coloured.endswith(f"; Auth: {ESC}[31mTEST_ALWAYS_FAIL{ESC}[0m)\n")
    # No names left after skipping incomplete entries: no " BY" at all.
    record["flow"]["egress_allowed_by"] = [{"name": "only-name"}]
    assert " BY" not in stdout_of(PrintOptions(print_policy_names=True), [record])


def test_verdict_words_and_colours(stdout_of) -> None:
    def verdict(value: object, event: int = 4) -> str:
        record = _odd("2024-07-04T12:00:00Z", {"type": event}, verdict=value, Summary="")
        if value is None:
            del record["flow"]["verdict"]
        text = stdout_of(PrintOptions(color=True), [record])
        return text.split(" to-endpoint " if event == 4 else "TRAFFIC_DIRECTION_UNKNOWN ", 1)[1][:-4]

    assert verdict("REDIRECTED") == f"{ESC}[32mREDIRECTED{ESC}[0m"
    assert verdict("ERROR") == f"{ESC}[31mERROR{ESC}[0m"
    assert verdict("AUDIT") == f"{ESC}[33mAUDIT{ESC}[0m"
    assert verdict("TRANSLATED") == f"{ESC}[33mTRANSLATED{ESC}[0m"
    assert verdict(42) == "42"
    assert verdict("AUDIT", event=5) == f"{ESC}[33mAUDITED{ESC}[0m"
    assert verdict("ERROR", event=5) == f"{ESC}[31mDENIED{ESC}[0m"
    assert verdict("REDIRECTED", event=5) == f"{ESC}[32mALLOWED{ESC}[0m"
    assert verdict("TRACED", event=5) == f"{ESC}[33mTRACED{ESC}[0m"
    assert verdict(None) == "VERDICT_UNKNOWN"


def test_control_characters_compact(stdout_of) -> None:
    records = [
        _odd(
            "2024-07-04T12:00:11Z",
            {"type": 4},
            verdict="FORWARDED",
            source=_pod(4242, "shop", "we\x1b[1mb"),
            Summary="a\rb\tc<&>\u2028",
        ),
        _odd("2024-07-04T12:00:12Z", {"type": 4}, verdict="FORWARDED", Summary="line1\nline2"),
    ]
    assert stdout_of(PrintOptions(), records) == (
        "Jul  4 12:00:11.000: shop/we^[[1mb (ID:4242) <> shop/db-0 (ID:4343) to-endpoint FORWARDED (a\\rb\tc<&>\u2028)\n"
        "Jul  4 12:00:12.000: shop/web-1 (ID:4242) <> shop/db-0 (ID:4343) to-endpoint FORWARDED (line1\nline2)\n"
    )


def test_colour_sequences_from_data_pass_through_only_with_colours(stdout_of) -> None:
    record = _odd(
        "2024-07-04T12:00:00Z", {"type": 4}, Summary="\x1b[31mred \x1b[1mbold \x1b[34mblue\x1b[0m\f"
    )
    plain = stdout_of(PrintOptions(), [record])
    assert plain.endswith("(^[[31mred ^[[1mbold ^[[34mblue^[[0m\f)\n")
    coloured = stdout_of(PrintOptions(color=True), [record])
    assert coloured.endswith("(\x1b[31mred ^[[1mbold \x1b[34mblue\x1b[0m\f)\n")
    table = stdout_of(PrintOptions(output="table", color=True), [record])
    assert "^[[31mred" in table and "\x1b" not in table


LOST = """
{"lost_events":{"source":"HUBBLE_RING_BUFFER","num_events_lost":"7","cpu":2,"first":"2024-07-04T12:00:01.500Z","last":"2024-07-04T12:00:01.750Z"},"node_name":"lab-worker","time":"2024-07-04T12:00:02Z"}
{"lost_events":{"source":"OBSERVER_EVENTS_QUEUE","num_events_lost":"3"},"time":"2024-07-04T12:00:02.250Z"}
"""
TABLE_FLOW = _flow(
    "2024-07-04T12:00:01Z",
    verdict="FORWARDED",
    IP=IPV4,
    l4={"TCP": {"source_port": 5555, "destination_port": 5432, "flags": {"SYN": True, "ACK": True}}},
    source=WEB,
    destination=DB,
    node_name="lab-worker",
    event_type={"type": 4, "sub_type": 3},
    is_reply=False,
    Summary="TCP Flags: SYN, ACK",
)


def _lost() -> list[dict]:
    return [orjson.loads(line) for line in LOST.strip().splitlines()]


def test_lost_events_compact_and_json(stdout_of) -> None:
    assert stdout_of(PrintOptions(print_node_name=True), _lost()) == (
        "Jul  4 12:00:02.000 EVENTS LOST: HUBBLE_RING_BUFFER CPU(2) 7 (first: Jul  4 12:00:01.500, last: Jul  4 12:00:01.750)\n"
        "Jul  4 12:00:02.250 EVENTS LOST: OBSERVER_EVENTS_QUEUE CPU(0) 3\n"
    )
    assert stdout_of(PrintOptions(output="json"), _lost()) == LOST.lstrip()


def test_lost_events_dict(stdout_of) -> None:
    assert stdout_of(PrintOptions(output="dict", print_node_name=True), _lost()[1:]) == (
        "  TIMESTAMP: Jul  4 12:00:02.250\n"
        "       NODE: -\n"
        "     SOURCE: OBSERVER_EVENTS_QUEUE\n"
        "       TYPE: EVENTS LOST\n"
        "    VERDICT: -\n"
        "    SUMMARY: CPU(0) - 3\n"
    )


def test_lost_events_table(stdout_of) -> None:
    assert stdout_of(PrintOptions(output="table", print_node_name=True), [TABLE_FLOW, *_lost()]) == (
        "TIMESTAMP             NODE         SOURCE                  DESTINATION      TYPE          VERDICT     SUMMARY\n"
        "Jul  4 12:00:01.000   lab-worker   shop/web-1:5555         shop/db-0:5432   to-stack      FORWARDED   TCP Flags: SYN, ACK\n"
        "Jul  4 12:00:02.000   lab-worker   HUBBLE_RING_BUFFER      -                EVENTS LOST   -           CPU(2) - 7 (first: Jul  4 12:00:01.500, last: Jul  4 12:00:01.750)\n"
        "Jul  4 12:00:02.250   -            OBSERVER_EVENTS_QUEUE   -                EVENTS LOST   -           CPU(0) - 3\n"
    )


def test_table_with_embedded_tab_and_line_feed(stdout_of) -> None:
    records = [
        TABLE_FLOW,
        _flow(
            "2024-07-04T12:00:06Z",
            verdict="FORWARDED",
            IP=IPV4,
            l4={"UDP": {"source_port": 40000, "destination_port": 53}},
            source=WEB,
            destination={"identity": 2},
            destination_names=["ns1.example.org", "ns2.example.org"],
            event_type={"type": 4, "sub_type": 11},
            is_reply=True,
            Summary="UDP",
        ),
        _odd(
            "2024-07-04T12:00:11Z",
            {"type": 4},
            verdict="FORWARDED",
            source=_pod(4242, "shop", "we\x1b[1mb"),
            Summary="a\rb\tc<&>\u2028",
        ),
        _odd("2024-07-04T12:00:12Z", {"type": 4}, verdict="FORWARDED", Summary="line1\nline2"),
        _odd(
            "2024-07-04T12:00:13Z",
            {"type": 5},
            verdict="FORWARDED",
            auth_type="TEST_ALWAYS_FAIL",
            traffic_direction="EGRESS",
            policy_match_type=3,
            ip_trace_id={"trace_id": "9"},
            egress_allowed_by=[{"name": "a", "kind": "NetworkPolicy"}],
            Summary="TCP Flags: SYN",
        ),
    ]
    assert stdout_of(PrintOptions(output="table"), records) == (
        "TIMESTAMP             SOURCE             DESTINATION                          TYPE          VERDICT     SUMMARY\n"
        "Jul  4 12:00:01.000   shop/web-1:5555    shop/db-0:5432                       to-stack      FORWARDED   TCP Flags: SYN, ACK\n"
        "Jul  4 12:00:06.000   shop/web-1:40000   ns1.example.org,ns2.example.org:53   to-network    FORWARDED   UDP\n"
        "Jul  4 12:00:11.000   shop/we^[[1mb      shop/db-0                            to-endpoint   FORWARDED   a\\rb   c<&>\u2028\n"
        "Jul  4 12:00:12.000   shop/web-1         shop/db-0                            to-endpoint   FORWARDED   line1\n"
        "line2\n"
        "Jul  4 12:00:13.000   shop/web-1   shop/db-0   policy-verdict:L4-Only EGRESS   ALLOWED   IP Trace ID: 9; TCP Flags: SYN; Auth: TEST_ALWAYS_FAIL\n"
    )


def test_table_empty_summary_keeps_padded_verdict(stdout_of) -> None:
    record = _flow("2024-07-04T12:00:00Z", verdict="DROPPED", IP=IPV4)
    lines = stdout_of(PrintOptions(output="table", numeric=True), [record]).splitlines()
    assert lines == [
        "TIMESTAMP             SOURCE     DESTINATION   TYPE      VERDICT   SUMMARY",
        "Jul  4 12:00:00.000   10.1.0.5   10.1.0.6      UNKNOWN   DROPPED   ",
    ]


def test_dict_empty_values_and_no_swap(stdout_of) -> None:
    record = _flow("2024-07-04T12:00:00Z", is_reply=True, source={"identity": 5})
    assert stdout_of(PrintOptions(output="dict", print_node_name=True), [record, record]) == (
        "  TIMESTAMP: Jul  4 12:00:00.000\n"
        "       NODE: \n"
        "     SOURCE: \n"
        "DESTINATION: \n"
        "       TYPE: UNKNOWN\n"
        "    VERDICT: VERDICT_UNKNOWN\n"
        "    SUMMARY: \n"
        "------------\n"
        "  TIMESTAMP: Jul  4 12:00:00.000\n"
        "       NODE: \n"
        "     SOURCE: \n"
        "DESTINATION: \n"
        "       TYPE: UNKNOWN\n"
        "    VERDICT: VERDICT_UNKNOWN\n"
        "    SUMMARY: \n"
    )


def test_lost_events_in_legacy_json_are_bare(stdout_of) -> None:
    got = stdout_of(PrintOptions(output="json", legacy_json=True), _lost())
    assert got == (
        '{"source":"HUBBLE_RING_BUFFER","num_events_lost":"7","cpu":2,'
        '"first":"2024-07-04T12:00:01.500Z","last":"2024-07-04T12:00:01.750Z"}\n'
        '{"source":"OBSERVER_EVENTS_QUEUE","num_events_lost":"3"}\n'
    )
