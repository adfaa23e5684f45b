"""The CLI's surface: help in one style, completion, version, and nothing accepted then ignored."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from concurrent import futures
from pathlib import Path

import grpc
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import loopback  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
SAMPLE = FIXTURES / "flows.jsonl"


def hubble(
    *argv: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess:
    base = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(REPO),
        "HOME": "/nonexistent-hubblepy-test-home",
    }
    return subprocess.run(
        [sys.executable, "-m", "hubblepy.cli", *argv],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        input=stdin,
        timeout=60,
    )


def upstream_flags() -> list[tuple[str, str, str]]:
    rows = []
    for line in (FIXTURES / "cli" / "upstream-observe-help-flags.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            group, short, name = line.split("|")
            rows.append((group, short, name))
    return rows


def help_sections(text: str) -> dict[str, list[str]]:
    """Flag lines of each ``X Flags:`` section of a help text."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.endswith(" Flags:"):
            current = line.removesuffix(" Flags:")
            sections[current] = []
        elif not line.strip():
            current = None
        elif current is not None and line.lstrip().startswith("-"):
            sections[current].append(line)
    return sections


def test_observe_help_lists_every_upstream_flag_in_its_group():
    result = hubble("observe", "--help")
    assert result.returncode == 0 and result.stderr == ""
    sections = help_sections(result.stdout)
    for group, short, name in upstream_flags():
        lines = sections.get(group, [])
        spelled = f"-{short}, --{name}" if short else f"    --{name}"
        assert any(re.match(rf"\s*{re.escape(spelled)}[\s\[]", line + " ") for line in lines), (group, name)


def test_every_observe_flag_parses_and_has_a_description():
    from hubblepy.cli.observe_args import OBSERVE_FLAGS

    for spec in OBSERVE_FLAGS.specs:
        assert spec.help and spec.group or spec.name == "help", spec.name


@pytest.mark.parametrize(
    "argv",
    [
        ["observe", "-h"],
        ["status", "--help"],
        ["list", "--help"],
        ["list", "nodes", "-h"],
        ["watch", "peers", "--help"],
        ["config", "--help"],
        ["ui", "--help"],
        ["observe", "agent-events", "--help"],
        ["completion", "--help"],
        ["lab", "--help"],
        ["policy", "audit-report", "--help"],
        ["help", "status"],
        ["-h"],
        ["help"],
        [],
    ],
)
def test_help_has_one_style(argv):
    result = hubble(*argv)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "\nUsage:\n  hubble" in text
    assert "\nGet help:\n  -h, --help   help for this command\n" in text
    assert "╭" not in text and "Options:" not in text  # neither rich boxes nor click's layout


def test_version_and_completion():
    assert hubble("--version").stdout.startswith("hubble v")
    assert hubble("version").stdout == hubble("--version").stdout
    for shell in ("bash", "zsh", "fish"):
        result = hubble("completion", shell)
        assert result.returncode == 0 and "hubble __complete" in result.stdout
    assert hubble("completion", "tcsh").returncode == 1
    assert "observe" in hubble("__complete", "obs").stdout.split()
    assert "--verdict" in hubble("__complete", "observe", "--").stdout.split()
    assert hubble("__complete", "observe", "--verdict", "").stdout.split()[:2] == ["FORWARDED", "DROPPED"]
    assert hubble("__complete", "list", "").stdout.split() == ["namespaces", "nodes"]
    assert "up" in hubble("__complete", "lab", "").stdout.split()


def test_unknown_command_and_flag():
    result = hubble("nope")
    assert result.returncode == 1 and result.stderr == 'unknown command "nope" for "hubble"\n'
    result = hubble("status", "--nope")
    assert result.returncode == 1 and result.stderr == "unknown flag: --nope\n"
    result = hubble("lab", "up", "--nope")  # a typer command: the same words, one line, status 1
    assert result.returncode == 1 and result.stderr == "unknown flag: --nope\n"


# -- nothing accepted and ignored ------------------------------------------------------------------


def test_short_port_forward_flag_has_one_wording_everywhere():
    for argv in (["observe", "-P=x"], ["status", "-P=x"], ["list", "nodes", "-P=x"]):
        result = hubble(*argv)
        assert result.returncode == 1
        assert (
            result.stderr
            == 'invalid argument "x" for "-P, --port-forward" flag: strconv.ParseBool: parsing "x": invalid syntax\n'
        )


def test_port_forward_without_kubeconfig_is_a_clear_error(tmp_path):
    result = hubble("status", "-P", "--kubeconfig", str(tmp_path / "missing"))
    assert result.returncode == 1
    assert result.stderr == (
        f"--port-forward needs a kubeconfig: {tmp_path / 'missing'} does not exist (set --kubeconfig or KUBECONFIG)\n"
    )
    result = hubble("observe", "-P", env={"PATH": str(tmp_path)})
    assert result.returncode == 1 and result.stderr == "--port-forward needs kubectl, which is not in PATH\n"


def test_port_forward_runs_kubectl_and_reports_its_error(tmp_path):
    import shutil

    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    port = loopback.free_port()  # nothing listens there: kubectl's API server is unreachable
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: lab\n"
        f"clusters: [{{name: lab, cluster: {{server: 'https://127.0.0.1:{port}'}}}}]\n"
        "contexts: [{name: lab, context: {cluster: lab, user: lab}}]\nusers: [{name: lab, user: {token: test}}]\n"
    )
    result = hubble("status", "-P", "--kubeconfig", str(kubeconfig), "--timeout", "20s")
    assert result.returncode == 1
    assert result.stderr.startswith("failed to port-forward to kube-system/svc/hubble-relay: ")
    assert f"127.0.0.1:{port}" in result.stderr  # kubectl's own reason: its API server refused
    assert result.stderr.count("\n") == 1


def test_input_file_with_port_forward_is_rejected():
    result = hubble("observe", "--input-file", str(SAMPLE), "-P")
    assert result.returncode == 1
    assert result.stderr == "cannot use --input-file and --auto-port-forward together\n"


def test_status_rejects_an_unknown_output():
    result = hubble("status", "-o", "foo", "--server", f"127.0.0.1:{loopback.free_port()}")
    assert result.returncode == 1 and result.stderr == "invalid output format: foo\n"


@pytest.mark.parametrize("output", ["table", "dict", "compact"])
def test_jq_needs_json_output(output):
    result = hubble("observe", "--input-file", str(SAMPLE), "-o", output, "--jq", ".flow.verdict")
    assert result.returncode == 1
    assert result.stderr == f"--jq needs JSON output: drop -o {output} or use -o json\n"


def test_jq_runtime_error_is_reported_and_fails():
    result = hubble("observe", "--input-file", str(SAMPLE), "--last", "2", "--jq", ".flow.verdict | error")
    assert result.returncode == 1
    assert result.stderr.count("jq program failed on a record") == 2
    assert result.stderr.endswith("the jq program failed on 2 record(s)\n")
    ok = hubble("observe", "--input-file", str(SAMPLE), "--last", "2", "--jq", ".flow.verdict")
    assert ok.returncode == 0 and len(ok.stdout.splitlines()) == 2


# -- agent and debug events ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def node_with_events():
    """Our Observer gRPC service with agent and debug events published."""
    import threading

    from hubblepy.observer.core import Observer
    from hubblepy.observer.service import NodeServices, observer_method_handlers

    observer = Observer("node-1")
    base = 1_709_251_200_000_000_000  # 2024-03-01T00:00:00Z
    observer.publish_agent_event(
        base,
        {
            "type": "POLICY_UPDATED",
            "policy_update": {
                "labels": ["k8s:io.cilium.k8s.policy.name=api-allow"],
                "revision": "7",
                "rule_count": "2",
            },
        },
    )
    observer.publish_agent_event(
        base + 1_000_000,
        {
            "type": "ENDPOINT_CREATED",
            "endpoint_update": {"id": "1234", "namespace": "payments", "pod_name": "api-0"},
        },
    )
    observer.publish_debug_event(
        base + 2_000_000,
        {"type": "DBG_CT_VERDICT", "source": {"ID": 42, "namespace": "payments", "pod_name": "api-0"},
         "hash": 255, "cpu": 1, "message": "CT verdict: New"},
    )  # fmt: skip
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    services = NodeServices(observer, {"name": "node-1"}, [], threading.Event())
    handlers = grpc.method_handlers_generic_handler("observer.Observer", observer_method_handlers(services))
    server.add_generic_rpc_handlers((handlers,))
    port = loopback.free_port()
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(None)


def test_agent_events_printed_like_upstream(node_with_events):
    result = hubble("observe", "agent-events", "--server", node_with_events)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "Mar  1 00:00:00.000: POLICY_UPDATED (labels: [k8s:io.cilium.k8s.policy.name=api-allow], revision: 7, count: 2)\n"
        "Mar  1 00:00:00.001: ENDPOINT_CREATED (id: 1234, namespace: payments, pod name: api-0)\n"
    )
    first = hubble("observe", "agent-events", "--server", node_with_events, "--first", "1")
    assert first.stdout == result.stdout.splitlines(keepends=True)[0]
    clash = hubble("observe", "agent-events", "--server", node_with_events, "--first", "1", "--last", "1")
    assert clash.returncode == 1 and clash.stderr == "cannot set both --first and --last\n"
    as_json = hubble("observe", "agent-events", "--server", node_with_events, "-o", "json", "--last", "1")
    assert as_json.stdout.startswith('{"agent_event":{"type":"ENDPOINT_CREATED"')


def test_debug_events_printed_like_upstream(node_with_events):
    result = hubble("observe", "debug-events", "--server", node_with_events, "--print-node-name")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "Mar  1 00:00:00.002 [node-1]: payments/api-0 (ID: 42) DBG_CT_VERDICT MARK: 0xff CPU: 01 (CT verdict: New)\n"
    )


def test_events_against_a_server_without_them_is_unimplemented():
    server, address = loopback.health_server()
    try:
        result = hubble("observe", "agent-events", "--server", address)
        assert result.returncode == 1
        assert result.stderr.startswith("rpc error: code = Unimplemented desc = ")
        result = hubble("observe", "debug-events", "--server", address)
        assert result.returncode == 1 and result.stderr.startswith("rpc error: code = Unimplemented")
    finally:
        server.stop(None)


def test_in_process_help_entry_points():
    from hubblepy.cli.status import main as status_main

    out = io.StringIO()
    assert status_main(["-h"], {}, out, io.StringIO()) == 0
    assert "Server Flags:" in out.getvalue()


def test_debug_names_the_config_file_for_every_live_command(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(f"server: 127.0.0.1:{loopback.free_port()}\n")
    for argv in (["status"], ["list", "nodes"], ["observe"], ["observe", "agent-events"]):
        result = hubble(*argv, "-D", "--config", str(config))
        assert result.returncode == 1
        first = result.stderr.splitlines()[0]
        assert 'level=DEBUG msg="Using config file"' in first and str(config) in first, argv


def test_global_flags_before_the_command(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("server: relay.example:4245\n")
    assert hubble("--config", str(config), "config", "get", "server").stdout == "relay.example:4245\n"
    result = hubble("-D", f"--config={config}", "config", "view")
    assert result.returncode == 0 and "server: relay.example:4245\n" in result.stdout
