"""ServerStatus flows_rate as upstream's node computes it: last minute, or the span a full ring covers."""

import pytest

from hubblepy.observer.core import Observer

S = 1_000_000_000
NOW = 1_700_000_000 * S


def publish(obs, times):
    obs.publish_flows((t, {"time": "x", "uuid": str(i)}) for i, t in enumerate(times))


def test_empty_ring_is_zero():
    assert Observer("n", capacity=7).flows_rate(NOW) == 0.0


def test_unfilled_ring_counts_last_minute_over_the_whole_minute():
    obs = Observer("n", capacity=127)
    publish(obs, [NOW - 120 * S, NOW - 90 * S] + [NOW - k * S for k in range(30, 0, -1)])
    # 30 flows within the minute; the older ones are outside it; divided by 60 s, not by uptime
    assert obs.flows_rate(NOW) == pytest.approx(30 / 60)


def test_full_ring_rate_over_the_span_it_covers():
    obs = Observer("n", capacity=7)
    publish(obs, [NOW - k * S for k in range(20, 0, -1)])  # one flow per second, ring keeps the newest 7
    # oldest kept flow is 7 s old: 7 flows over 7 s
    assert obs.flows_rate(NOW) == pytest.approx(1.0)


def test_full_ring_with_older_flows_than_a_minute_uses_the_minute():
    obs = Observer("n", capacity=7)
    publish(obs, [NOW - 100 * S] * 4 + [NOW - 10 * S, NOW - 5 * S, NOW - 1 * S])
    assert obs.flows_rate(NOW) == pytest.approx(3 / 60)


def test_lost_events_are_not_counted():
    obs = Observer("n", capacity=127)
    publish(obs, [NOW - 2 * S])
    obs.publish_lost("PERF_EVENT_RING_BUFFER", 5)
    assert obs.flows_rate(NOW) == pytest.approx(1 / 60)
