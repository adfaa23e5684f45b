"""Per-policy audit in the real eBPF datapath: audit-only deny entries and audited default deny."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.root
TCP = 6
BASE = 3000


@pytest.fixture
def bed():
    try:
        from testbed import Testbed

        from hubblepy.datapath import Datapath, DatapathUnavailable, check_environment
    except ImportError as exc:
        pytest.skip(f"datapath not importable: {exc}")
    try:
        check_environment()
    except DatapathUnavailable as exc:
        pytest.skip(str(exc))
    tb = Testbed(3, prefix="hpa")
    dp = reader = None
    try:
        tb.up()
        dp = Datapath()
        for i, pod in enumerate(tb.pods, 1):
            dp.upsert_endpoint(i, pod.host_ifindex, BASE + i)
            dp.set_ipcache(f"{pod.ip}/32", BASE + i)
            dp.attach(pod.host_ifname, netns=tb.node)
        reader = dp.open_monitor(pages=16)
        yield tb, dp, reader
    finally:
        if reader is not None:
            reader.close()
        if dp is not None:
            dp.close()
        tb.down()


def _verdicts(reader, want: int, wait: float = 2.0) -> list:
    from hubblepy.datapath.layout import PolicyVerdictEvent, decode_event

    out: list = []
    deadline = time.monotonic() + wait
    while len(out) < want and time.monotonic() < deadline:
        for _, raw in reader.read(0.05).samples:
            event = decode_event(raw)
            if isinstance(event, PolicyVerdictEvent) and event.dst_port == 8080:
                out.append(event)
    return out


def test_audit_only_deny_passes_but_an_enforced_deny_still_drops(bed):
    from hubblepy.datapath import PolicyEntry

    tb, dp, reader = bed
    p1, p2, p3 = tb.pods
    dp.set_enforcement(2, ingress=True)
    dp.set_policy_entries(
        2,
        "ingress",
        [
            PolicyEntry(BASE + 1, 8080, TCP, cookie=5),
            PolicyEntry(BASE + 1, 0, 0, deny=True, audit=True, cookie=77),  # audit deny beats the allow
            PolicyEntry(BASE + 3, 8080, TCP, deny=True, audit=True, cookie=78),
            PolicyEntry(BASE + 3, 0, 0, deny=True, cookie=79),  # enforced deny, less specific: wins
        ],
    )
    tb.echo_server(p2, 8080)
    conn = tb.connect(p1, p2, 8080)
    assert conn is not None
    conn.close()
    assert tb.connect(p3, p2, 8080, timeout=0.5) is None
    events = _verdicts(reader, 2)
    by_remote = {e.remote_label: e for e in events}
    audited = by_remote[BASE + 1]
    assert (audited.verdict, audited.audited, audited.cookie) == (0, True, 77)
    denied = by_remote[BASE + 3]
    assert (denied.verdict, denied.audited, denied.cookie) == (-181, False, 79)


def test_audited_default_deny_per_direction(bed):
    tb, dp, reader = bed
    p1, p2, _ = tb.pods
    dp.set_enforcement(2, ingress=True)
    dp.set_default_audit(2, ingress=True, egress=False)
    tb.echo_server(p2, 8080)
    conn = tb.connect(p1, p2, 8080)
    assert conn is not None
    conn.close()
    event = _verdicts(reader, 1)[0]
    assert (event.verdict, event.audited, event.cookie) == (0, True, 0)
    dp.set_default_audit(2, ingress=False, egress=True)
    assert tb.connect(p1, p2, 8080, timeout=0.5) is None


def test_audit_only_deny_without_any_allow_leaves_the_default_deny_to_decide(bed):
    from hubblepy.datapath import PolicyEntry

    tb, dp, reader = bed
    p1, p2, _ = tb.pods
    dp.set_enforcement(2, ingress=True)
    dp.set_policy_entries(2, "ingress", [PolicyEntry(BASE + 1, 0, 0, deny=True, audit=True, cookie=77)])
    tb.echo_server(p2, 8080)
    assert tb.connect(p1, p2, 8080, timeout=0.5) is None
    event = _verdicts(reader, 1)[0]
    assert (event.verdict, event.audited, event.cookie) == (-133, False, 0)
    dp.set_default_audit(2, ingress=True, egress=False)  # every engaging policy audited: passes
    conn = tb.connect(p1, p2, 8080)
    assert conn is not None
    conn.close()
