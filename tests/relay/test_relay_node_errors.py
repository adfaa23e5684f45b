"""NODE_ERROR aggregation: nodes failing together are reported in one NodeStatusEvent (real processes)."""

import signal
import threading
import time

import grpc
from liveprocs import FLOWS

from hubblepy.api.observer import observer_pb2, observer_pb2_grpc
from hubblepy.api.relay import relay_pb2
from relay.node_errors import ErrorAggregator


def test_aggregator_merges_the_errors_of_one_window():
    agg = ErrorAggregator(10.0)
    assert not agg and not agg.due(100.0) and agg.take() is None
    agg.add("a", "boom", now=100.0)
    agg.add("b", "other words", now=101.0)
    agg.add("a", "boom", now=102.0)  # the same node twice is named once
    assert agg and not agg.due(109.9) and agg.due(110.0)
    assert agg.take() == (["a", "b"], "boom")  # the message of the first error
    assert not agg and not agg.due(1e9) and agg.take() is None
    agg.add("c", "late", now=200.0)  # a new window opens with the next error
    assert not agg.due(209.0) and agg.due(210.0)
    assert agg.take() == (["c"], "late")


def _collect_statuses(stream, statuses, flows_from):
    try:
        for resp in stream:
            if resp.HasField("node_status"):
                st = resp.node_status
                statuses.append((st.state_change, list(st.node_names), st.message))
            elif resp.HasField("flow"):
                flows_from.add(resp.node_name)
    except grpc.RpcError:
        pass


def _wait(condition, seconds, what):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_nodes_failing_together_give_one_node_error(procs):
    nodes = {name: procs.agent(name, "--replay", str(FLOWS), "--rate", "100") for name in ("na", "nb", "nc")}
    # A window far longer than the test: the held errors can only come out through the early flush
    # before the next node status (the NODE_CONNECTED of a returning node), so nothing here is timed.
    relay = procs.relay(
        "--peers",
        ",".join(f"{name}={n.address}" for name, n in nodes.items()),
        "--retry-timeout",
        "1s",
        "--sort-buffer-drain-timeout",
        "100ms",
        "--error-aggregation-window",
        "10m",
    )
    stub = observer_pb2_grpc.ObserverStub(grpc.insecure_channel(relay.address))
    stream = stub.GetFlows(observer_pb2.GetFlowsRequest(follow=True))
    statuses: list = []
    flows_from: set = set()
    threading.Thread(target=_collect_statuses, args=(stream, statuses, flows_from), daemon=True).start()
    try:
        _wait(lambda: flows_from >= {"na", "nb", "nc"}, 20, flows_from)
        assert statuses[0] == (relay_pb2.NODE_CONNECTED, ["na", "nb", "nc"], "")
        port = nodes["nb"].port
        nodes["nb"].kill(signal.SIGKILL)
        nodes["nc"].kill(signal.SIGKILL)
        procs.agent("nb", "--replay", str(FLOWS), "--rate", "100", listen=f"127.0.0.1:{port}")
        _wait(
            lambda: any(s[0] == relay_pb2.NODE_CONNECTED and s[1] == ["nb"] for s in statuses), 20, statuses
        )
    finally:
        stream.cancel()
    after_start = statuses[
        1 : next(i for i, s in enumerate(statuses) if s[:2] == (relay_pb2.NODE_CONNECTED, ["nb"]))
    ]
    assert len(after_start) == 1, statuses
    state, names, message = after_start[0]
    assert state == relay_pb2.NODE_ERROR
    assert sorted(names) == ["nb", "nc"]
    assert message.startswith("rpc error: code = ")


def test_held_errors_are_sent_when_the_window_closes(procs):
    nodes = {name: procs.agent(name, "--replay", str(FLOWS), "--rate", "100") for name in ("na", "nb", "nc")}
    relay = procs.relay(
        "--peers",
        ",".join(f"{name}={n.address}" for name, n in nodes.items()),
        "--retry-timeout",
        "1s",
        "--error-aggregation-window",
        "2s",
    )
    stub = observer_pb2_grpc.ObserverStub(grpc.insecure_channel(relay.address))
    stream = stub.GetFlows(observer_pb2.GetFlowsRequest(follow=True))
    statuses: list = []
    flows_from: set = set()
    threading.Thread(target=_collect_statuses, args=(stream, statuses, flows_from), daemon=True).start()
    try:
        _wait(lambda: flows_from >= {"na", "nb", "nc"}, 20, flows_from)
        nodes["nb"].kill(signal.SIGKILL)
        nodes["nc"].kill(signal.SIGKILL)  # no node comes back: only the window's end sends the error
        _wait(lambda: any(s[0] == relay_pb2.NODE_ERROR for s in statuses), 20, statuses)
    finally:
        stream.cancel()
    errors = [s for s in statuses if s[0] == relay_pb2.NODE_ERROR]
    assert sorted(errors[0][1]) == ["nb", "nc"], statuses
