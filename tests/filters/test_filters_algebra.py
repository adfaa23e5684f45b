"""Hypothesis: the allow/deny combination laws hold for random filters over the fixture flows."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubblepy.filters import compile_flow_filter, compile_flow_filters

SINGLE_FIELD_FILTERS: list[dict[str, Any]] = [
    {"verdict": ["DROPPED"]},
    {"verdict": ["FORWARDED", "AUDIT"]},
    {"source_pod": ["payments/"]},
    {"destination_pod": ["/coredns"]},
    {"destination_pod": ["kube-system/"]},
    {"protocol": ["tcp"]},
    {"protocol": ["dns", "kafka"]},
    {"event_type": [{"type": 4}]},
    {"event_type": [{"type": 129}]},
    {"destination_port": ["53"]},
    {"source_label": ["tier=backend"]},
    {"destination_label": ["!app"]},
    {"node_name": ["lab-worker*"]},
    {"traffic_direction": ["EGRESS"]},
    {"ip_version": ["IPv6"]},
    {"reply": [True]},
    {"encrypted": [False]},
    {"destination_ip": ["10.244.0.0/16"]},
    {"tcp_flags": [{"SYN": True}]},
    {"destination_fqdn": ["*.com"]},
]

filters = st.sampled_from(SINGLE_FIELD_FILTERS)
LOST = {"lost_events": {"num_events_lost": "1"}}
SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _flows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [*records, LOST, {}]


@SETTINGS
@given(a=filters, b=filters)
def test_allow_list_is_an_or_and_deny_list_subtracts(
    a: dict[str, Any], b: dict[str, Any], flow_records: list[dict[str, Any]]
) -> None:
    pa = compile_flow_filters([a], [])
    pb = compile_flow_filters([b], [])
    either = compile_flow_filters([a, b], [])
    a_not_b = compile_flow_filters([a], [b])
    not_a = compile_flow_filters([], [a])
    for record in _flows(flow_records):
        assert either(record) == (pa(record) or pb(record))
        if "flow" in record:
            assert a_not_b(record) == (pa(record) and not pb(record))
            assert not_a(record) == (not pa(record))


@SETTINGS
@given(a=filters, b=filters)
def test_fields_of_one_filter_are_anded(
    a: dict[str, Any], b: dict[str, Any], flow_records: list[dict[str, Any]]
) -> None:
    if set(a) & set(b):
        return
    both = compile_flow_filters([{**a, **b}], [])
    pa = compile_flow_filters([a], [])
    pb = compile_flow_filters([b], [])
    for record in _flows(flow_records):
        assert both(record) == (pa(record) and pb(record))


@SETTINGS
@given(a=filters)
def test_flowless_result_is_decided_at_compile_time(a: dict[str, Any]) -> None:
    _, flowless = compile_flow_filter(a)
    assert compile_flow_filters([a], [])(LOST) == flowless
    assert compile_flow_filters([], [a])(LOST) == (not flowless)
