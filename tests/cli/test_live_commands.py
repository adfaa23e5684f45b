"""`hubble status`, `list nodes|namespaces`, `watch peers` and `config` against real agent/relay processes."""

import importlib.util
import io
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hubblepy.cli import config as config_cmd
from hubblepy.cli import list as list_cmd
from hubblepy.cli import status as status_cmd
from hubblepy.cli.list import list_main
from hubblepy.cli.status import status_main
from hubblepy.cli.watch import format_peer_change

if "liveprocs" not in sys.modules:
    _spec = importlib.util.spec_from_file_location(
        "liveprocs", Path(__file__).parent.parent / "observer" / "liveprocs.py"
    )
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["liveprocs"] = _module
    _spec.loader.exec_module(_module)
liveprocs = sys.modules["liveprocs"]
ENV = {"HOME": "/nonexistent-hubblepy-test-home"}


@pytest.fixture(scope="module")
def cluster():
    procs = liveprocs.Procs()
    a = procs.agent("node-a", "--replay", str(liveprocs.FLOWS), "--replay-verbatim", "--rate", "0")
    b = procs.agent("node-b", "--replay", str(liveprocs.FLOWS), "--replay-verbatim", "--rate", "0")
    relay = procs.relay("--peers", f"{a.address},{b.address}", "--retry-timeout", "1s")
    yield {"a": a, "b": b, "relay": relay, "procs": procs}
    procs.close()


def run(func, argv, env=ENV):
    out, err = io.StringIO(), io.StringIO()
    code = func(argv, env, out, err)
    return code, out.getvalue(), err.getvalue()


def test_status_through_relay(cluster):
    code, out, err = run(status_main, ["--server", cluster["relay"].address])
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"Healthcheck (via {cluster['relay'].address}): Ok"
    assert lines[1].startswith("Current/Max Flows: ") and lines[1].endswith("/8,190 (5.62%)")
    assert lines[2].startswith("Flows/s: ")
    assert lines[3] == "Connected Nodes: 2/2"
    code, out, _ = run(status_main, ["--server", cluster["relay"].address, "-o", "json"])
    status = json.loads(out)
    assert (status["num_flows"], status["max_flows"], status["num_connected_nodes"]) == ("460", "8190", 2)


def test_status_of_a_node_has_no_node_counts(cluster):
    code, out, _ = run(status_main, ["--server", cluster["a"].address])
    assert code == 0
    assert "Current/Max Flows: 230/4,095 (5.62%)\n" in out and "Connected Nodes" not in out


def test_list_nodes_and_namespaces(cluster):
    code, out, err = run(list_main, ["nodes", "--server", cluster["relay"].address])
    assert code == 0, err
    header, *rows = out.splitlines()
    assert header.split() == ["NAME", "STATUS", "AGE", "FLOWS/S", "CURRENT/MAX-FLOWS"]
    assert [r.split()[:2] for r in rows] == [["node-a", "Connected"], ["node-b", "Connected"]]
    code, out, _ = run(list_main, ["nodes", "--server", cluster["relay"].address, "-o", "json"])
    nodes = json.loads(out)
    assert [(n["name"], n["state"], n["num_flows"]) for n in nodes] == [
        ("node-a", "NODE_CONNECTED", "230"),
        ("node-b", "NODE_CONNECTED", "230"),
    ]
    assert out.startswith('[\n  {\n    "name": ')
    code, out, _ = run(list_main, ["namespaces", "--server", cluster["relay"].address])
    assert out == "NAMESPACE\ncde\ndefault\nkube-system\npayments\n"


def test_unavailable_node_is_reported_by_status_and_list(cluster):
    procs = liveprocs.Procs()
    gone = procs.agent("node-gone")
    address = gone.address
    gone.kill()
    relay = procs.relay("--peers", f"{cluster['a'].address},node-gone={address}", "--dial-timeout", "1s")
    try:
        code, out, _ = run(status_main, ["--server", relay.address])
        assert code == 0
        assert "Connected Nodes: 1/2\nUnavailable Nodes: 1\n  - node-gone\n" in out
        code, out, _ = run(list_main, ["nodes", "--server", relay.address])
        assert any(line.split()[:2] == ["node-gone", "Unavailable"] for line in out.splitlines())
    finally:
        procs.close()


def test_unreachable_server_one_line_nonzero():
    code, out, err = run(status_main, ["--server", "127.0.0.1:1", "--timeout", "500ms"])
    assert code == 1 and out == ""
    assert err.startswith(
        "failed to connect to '127.0.0.1:1': dial tcp 127.0.0.1:1: connect: connection refused"
    )


def test_raw_entry_points_exist():
    assert callable(status_cmd.main) and callable(list_cmd.main) and callable(config_cmd.main)


def test_watch_peers_prints_notifications_and_ctrl_c_exits_zero(cluster):
    node = cluster["a"]
    code = f"import sys; from hubblepy.cli.watch import main; sys.exit(main(['peers', '--server', '{node.address}']))"
    # started with SIGINT ignored, as a background job of a script would be: Ctrl-C must still work
    # (upstream's CLI installs its handler whatever it inherited)
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=liveprocs.REPO,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        line = proc.stdout.readline().decode()
        assert line == f"PEER_ADDED   {node.address} node-a\n"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
    assert proc.returncode == 0, proc.stderr.read()


def test_peer_change_format_with_tls():
    from hubblepy.api.peer import peer_pb2

    note = peer_pb2.ChangeNotification(name="n", address="10.0.0.1:4244", type=peer_pb2.PEER_DELETED)
    note.tls.server_name = "n.default.hubble-grpc.cilium.io"
    assert (
        format_peer_change(note)
        == "PEER_DELETED 10.0.0.1:4244 n (TLS.ServerName: n.default.hubble-grpc.cilium.io)\n"
    )


def test_config_set_get_view_reset(tmp_path):
    path = str(tmp_path / "hubble" / "config.yaml")
    assert run(config_cmd.config_main, ["set", "server", "relay.example:4245", "--config", path])[0] == 0
    assert run(config_cmd.config_main, ["set", "timeout", "2s", "--config", path])[0] == 0
    assert run(config_cmd.config_main, ["get", "server", "--config", path])[1] == "relay.example:4245\n"
    code, out, _ = run(config_cmd.config_main, ["view", "--config", path])
    assert "server: relay.example:4245\n" in out and "timeout: 2s\n" in out and 'tls-server-name: ""\n' in out
    env = {**ENV, "HUBBLE_SERVER": "from-env:1"}
    assert run(config_cmd.config_main, ["get", "server", "--config", path], env)[1] == "from-env:1\n"
    code, _, err = run(config_cmd.config_main, ["set", "timeout", "soon", "--config", path])
    assert code == 1
    assert (
        err
        == 'cannot assign value=soon for key=timeout, expected type=duration: time: invalid duration "soon"\n'
    )
    assert run(config_cmd.config_main, ["get", "nope", "--config", path])[2] == "unknown key: nope\n"
    assert run(config_cmd.config_main, ["reset", "--config", path])[0] == 0
    assert run(config_cmd.config_main, ["get", "server", "--config", path])[1] == "localhost:4245\n"


def test_live_observe_runs_jq_and_fails_on_a_jq_error(cluster):
    base = [*liveprocs.hubble_cli(), "observe", "--server", cluster["a"].address, "--last", "3"]
    ok = subprocess.run(
        [*base, "--jq", ".flow.verdict"], capture_output=True, env=liveprocs.clean_env(), timeout=60
    )
    assert ok.returncode == 0, ok.stderr.decode()
    verdicts = ok.stdout.decode().splitlines()
    assert len(verdicts) == 3 and all(v in ("FORWARDED", "DROPPED", "AUDIT", "REDIRECTED") for v in verdicts)
    bad = subprocess.run([*base, "--jq", "error"], capture_output=True, env=liveprocs.clean_env(), timeout=60)
    assert bad.returncode == 1 and bad.stdout == b""
    assert bad.stderr.decode().endswith("the jq program failed on 3 record(s)\n")


def test_live_observe_sends_the_default_field_mask_when_asked(cluster):
    base = [*liveprocs.hubble_cli(), "observe", "--server", cluster["a"].address, "--last", "2"]
    plain = subprocess.run(base, capture_output=True, env=liveprocs.clean_env(), timeout=60)
    masked = subprocess.run(
        [*base, "--use-default-field-masks"], capture_output=True, env=liveprocs.clean_env(), timeout=60
    )
    assert plain.returncode == 0 and masked.returncode == 0, masked.stderr.decode()
    assert len(masked.stdout.splitlines()) == 2
    # the mask keeps what compact prints for these flows: times, endpoints, verdicts
    assert [line.split(b" ")[0:3] for line in masked.stdout.splitlines()] == [
        line.split(b" ")[0:3] for line in plain.stdout.splitlines()
    ]


def test_agent_events_through_the_relay_are_unimplemented_as_upstream(cluster):
    argv = [*liveprocs.hubble_cli(), "observe", "agent-events", "--server", cluster["relay"].address]
    result = subprocess.run(argv, capture_output=True, env=liveprocs.clean_env(), timeout=60)
    assert result.returncode == 1 and result.stdout == b""
    assert (
        result.stderr.decode() == "rpc error: code = Unimplemented desc = not implemented by hubble-relay\n"
    )
