"""Completeness statements from node lists, stream events and rings (no server needed)."""

from __future__ import annotations

from hubblepy.evidence.live import StreamWatcher, completeness

NOW = 1_800_000_000 * 10**9
HOUR = 3600 * 10**9


class Sink:
    def __init__(self) -> None:
        self.records: list[dict] = []

    def write(self, resp: dict, raw: bytes | None = None) -> None:
        self.records.append(resp)


def node(name: str, seen: int = 10, held: int = 10, uptime: int = 2 * HOUR) -> dict:
    return {
        "name": name,
        "state": "NODE_CONNECTED",
        "address": "",
        "num_flows": held,
        "max_flows": 4095,
        "seen_flows": seen,
        "uptime_ns": uptime,
    }


def test_status_events_pass_through_and_name_who_answered_and_who_failed():
    sink = Sink()
    watcher = StreamWatcher(sink)
    events = [
        {"node_status": {"state_change": "NODE_CONNECTED", "node_names": ["n1", "n2"]}},
        {"node_status": {"state_change": "NODE_UNAVAILABLE", "node_names": ["n3"]}},
        {"flow": {"verdict": "DROPPED"}},
        {"node_status": {"state_change": "NODE_ERROR", "node_names": ["n2"], "message": "stream reset"}},
    ]
    for event in events:
        watcher.write(event)
    assert sink.records == events
    result = completeness(
        [node("n1"), node("n2"), node("n3")], watcher, {}, NOW - HOUR, None, NOW, lost_events=[]
    )
    assert result["complete"] is False
    assert result["nodes"]["answered"] == ["n1", "n2"]
    assert result["problems"] == [
        "node n3 did not answer the query (state NODE_CONNECTED)",
        "node n2 reported an error during the query: stream reset",
    ]
    assert [r["window_start_held"] for r in result["rings"]] == [True, True, None]


def test_rings_that_no_longer_reach_the_window_start_are_problems():
    watcher = StreamWatcher(Sink())
    nodes = [
        node("old", seen=9000, held=4095),
        node("young", uptime=HOUR // 2),
        node("fine", seen=9000, held=4095),
    ]
    oldest = {"old": NOW - HOUR // 4, "young": NOW - HOUR // 4, "fine": NOW - 2 * HOUR}
    result = completeness(nodes, watcher, oldest, NOW - HOUR, None, NOW, lost_events=[])
    rings = {r["node"]: r for r in result["rings"]}
    assert rings["old"]["ring_wrapped"] and not rings["old"]["window_start_held"]
    assert not rings["young"]["ring_wrapped"] and not rings["young"]["window_start_held"]
    assert rings["fine"]["window_start_held"] is True
    assert len(result["problems"]) == 2
    assert "oldest flow still held is" in result["problems"][0]
    assert "only started observing" in result["problems"][1]
    # Without --since, a ring that wrapped cannot answer "everything".
    result = completeness([node("old", seen=9000, held=4095)], watcher, oldest, None, None, NOW, [])
    assert result["problems"][0].startswith("node old: no --since was given")


def test_lost_events_in_the_window_are_problems_and_outside_it_notes():
    watcher = StreamWatcher(Sink())
    lost = [
        {"node": "n1", "source": "PERF_EVENT_RING_BUFFER", "count": 3, "time": "2027-01-15T08:00:00Z"},
        {"node": "n1", "source": "HUBBLE_RING_BUFFER", "count": 9, "time": "2020-01-01T00:00:00Z"},
    ]
    result = completeness(
        [node("n1", uptime=20 * 24 * HOUR)], watcher, {}, NOW - 10 * 24 * HOUR, None, NOW, lost
    )
    assert result["problems"] == [
        "3 events lost (PERF_EVENT_RING_BUFFER) reported by n1 at 2027-01-15T08:00:00Z"
    ]
    assert result["notes"] == [
        "9 events lost (HUBBLE_RING_BUFFER) reported by n1 at 2020-01-01T00:00:00Z, outside the time window"
    ]
    assert completeness([], watcher, {}, None, None, NOW, [])["problems"] == [
        "the server did not list its nodes (GetNodes failed): completeness cannot be shown"
    ]
