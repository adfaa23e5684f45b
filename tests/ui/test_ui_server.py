"""`hubble ui` as a real process: errors, request checks, the WebSocket protocol, live feeds (plain, TLS)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import pytest
from hubbletest import REPO_ROOT, run_hubble

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "observer"))
from liveprocs import Procs, make_pki  # noqa: E402
from uitools import UiProcess  # noqa: E402

SAMPLE = REPO_ROOT / "hubblepy" / "sample" / "payments-sample.jsonl"


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture()
def procs():
    owner = Procs()
    yield owner
    owner.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--listen-address", "nowhere"],
            "hubble ui: invalid --listen-address 'nowhere': expected HOST:PORT",
        ),
        (
            ["--input-file", "/nonexistent/f.json"],
            "hubble ui: open /nonexistent/f.json: no such file or directory",
        ),
        (["--batch-interval", "0"], "hubble ui: --batch-interval and --flows-per-edge must be positive"),
        (["--bogus"], "hubble ui: unknown flag: --bogus"),
        (["--recent", "5x"], 'hubble ui: invalid --recent: time: unknown unit "x" in duration "5x"'),
    ],
)
def test_bad_flags_and_files_give_one_line_and_exit_1(args, message):
    out = run_hubble(["ui", *args], timeout=60)
    assert out.returncode == 1
    lines = out.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), lines


def test_an_invalid_line_names_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_bytes(SAMPLE.read_bytes().splitlines()[0] + b"\n{oops\n")
    out = run_hubble(["ui", "--input-file", str(bad)], timeout=60)
    assert out.returncode == 1
    assert out.stderr.decode().startswith(f"hubble ui: {bad}:2: invalid JSON")


def test_a_busy_port_is_one_line():
    first = UiProcess("--input-file", str(SAMPLE))
    try:
        address = first.url.removeprefix("http://")
        out = run_hubble(["ui", "--input-file", str(SAMPLE), "--listen-address", address], timeout=60)
        assert out.returncode == 1
        assert out.stderr.decode().startswith(f"hubble ui: cannot listen on {address}: ")
    finally:
        assert first.stop() == 0


def test_page_assets_api_and_foreign_hosts_or_origins(tmp_path):
    ui = UiProcess("--input-file", str(SAMPLE))
    try:
        status, body = _get(ui.url + "/")
        assert status == 200 and b"/static/vendor/cytoscape-3.34.4.min.js" in body
        status, body = _get(ui.url + "/static/vendor/cytoscape-3.34.4.min.js")
        assert status == 200 and b"Cytoscape Consortium" in body[:400]
        status, body = _get(ui.url + "/api/status")
        state = json.loads(body)
        assert state["stats"]["flows"] == 78 and state["namespaces"] == {"payments": 78, "kube-system": 9}
        assert state["status"]["state"] == "file"
        status, body = _get(
            ui.url + "/api/flows?edge=" + urllib.request.quote("payments/probe|payments/api|8080|TCP")
        )
        rows = json.loads(body)["rows"]
        assert status == 200 and len(rows) == 19 and rows[0]["seq"] > rows[-1]["seq"]
        assert _get(ui.url + "/api/flows")[0] == 400
        assert _get(ui.url + "/api/flows?node=x&limit=many")[0] == 400
        port = ui.url.rsplit(":", 1)[1]
        assert _get(ui.url + "/api/status", {"Host": f"localhost:{port}"})[0] == 200
        assert _get(ui.url + "/api/status", {"Host": f"attacker.example:{port}"})[0] == 403
        assert _get(ui.url + "/api/status", {"Origin": "http://attacker.example"})[0] == 403
        assert _get(ui.url + "/api/status", {"Origin": ui.url})[0] == 200
        assert _get(ui.url + "/static/../cli.py")[0] == 404
    finally:
        assert ui.stop() == 0


async def _messages(url: str, namespace: str, until, timeout_s: float = 30) -> list[dict]:
    """WebSocket messages (after subscribing to ``namespace``) until ``until(messages)`` holds."""
    seen: list[dict] = []
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url.replace("http", "ws") + "/ws") as ws,
    ):
        first = await ws.receive_json(timeout=10)
        seen.append(first)
        await ws.send_str(json.dumps({"namespace": namespace}))
        deadline = time.monotonic() + timeout_s
        while not until(seen):
            if time.monotonic() > deadline:
                raise AssertionError(f"never matched: {seen[-3:]}")
            seen.append(await ws.receive_json(timeout=10))
    return seen


def test_websocket_snapshot_of_a_namespace():
    ui = UiProcess("--input-file", str(SAMPLE))
    try:
        seen = asyncio.run(_messages(ui.url, "payments", lambda s: any(m["type"] == "snapshot" for m in s)))
        assert seen[0]["namespace"] is None and "nodes" not in seen[0]
        assert seen[0]["namespaces"] == {"payments": 78, "kube-system": 9}
        snap = next(m for m in seen if m["type"] == "snapshot")
        assert snap["namespace"] == "payments"
        assert len(snap["edges"]) == 4 and {n["id"] for n in snap["nodes"]} >= {
            "payments/api",
            "kube-system/kube-dns",
        }
        kube = asyncio.run(
            _messages(ui.url, "kube-system", lambda s: any(m["type"] == "snapshot" for m in s))
        )
        edges = next(m for m in kube if m["type"] == "snapshot")["edges"]
        assert [(e["source"], e["target"], e["port"], e["protocol"]) for e in edges] == [
            ("payments/frontend", "kube-system/kube-dns", 53, "UDP")
        ]
    finally:
        assert ui.stop() == 0


def _total(messages: list[dict]) -> int:
    edges: dict[str, int] = {}
    for m in messages:
        for e in m.get("edges", []):
            edges[e["id"]] = e["total"]
    return sum(edges.values())


def test_live_feed_from_a_replay_agent_sends_growing_edge_deltas(procs):
    agent = procs.agent("n1", "--replay", str(SAMPLE), "--rate", "200")
    ui = UiProcess("--server", agent.address, "--batch-interval", "0.2")
    try:

        def grown(messages: list[dict]) -> bool:
            snaps = [m for m in messages if m["type"] == "snapshot"]
            return bool(snaps) and _total(messages) > _total(snaps[:1]) + 100

        seen = asyncio.run(_messages(ui.url, "payments", grown))
        assert seen[-1]["status"]["state"] == "connected"
        assert any(m["type"] == "delta" and m.get("edges") for m in seen)
        # deltas carry only the edges that changed, with absolute counts
        assert max(len(m.get("edges", [])) for m in seen if m["type"] == "delta") <= 4
        agent.kill()
        status = asyncio.run(_messages(ui.url, "payments", lambda s: s[-1]["status"]["state"] == "error"))
        assert agent.address in status[-1]["status"]["text"]
    finally:
        assert ui.stop() == 0


def test_live_feed_over_tls_with_the_cli_flags(procs, tmp_path):
    pki = make_pki(tmp_path)
    agent = procs.agent(
        "n1", "--replay", str(SAMPLE), "--rate", "200", "--tls-cert-file", str(pki["server"]),
        "--tls-key-file", str(pki["server-key"]),
    )  # fmt: skip
    ui = UiProcess(
        "--server", f"tls://{agent.address}", "--tls-ca-cert-files", str(pki["ca"]),
        "--tls-server-name", "n1.default.hubble-grpc.cilium.io",
    )  # fmt: skip
    try:
        seen = asyncio.run(_messages(ui.url, "payments", lambda s: _total(s) > 20))
        assert seen[-1]["status"]["state"] == "connected"
    finally:
        assert ui.stop() == 0
    insecure = UiProcess("--server", f"tls://{agent.address}", "--tls-allow-insecure")
    try:
        seen = asyncio.run(_messages(insecure.url, "payments", lambda s: _total(s) > 20))
        assert seen[-1]["status"]["state"] == "connected"
    finally:
        assert insecure.stop() == 0


def test_a_relay_with_two_nodes_feeds_one_map(procs):
    nodes = [procs.agent(f"n{i}", "--replay", str(SAMPLE), "--rate", "100") for i in range(2)]
    relay = procs.relay("--peers", ",".join(n.address for n in nodes))
    ui = UiProcess("--server", relay.address, "--batch-interval", "0.2")
    try:
        seen = asyncio.run(_messages(ui.url, "payments", lambda s: _total(s) > 150))
        assert seen[-1]["status"]["state"] == "connected"
        status, body = _get(ui.url + "/api/flows?node=payments%2Fapi&limit=5000")
        names = {row["json"]["node_name"] for row in json.loads(body)["rows"]}
        assert names == {"n0", "n1"}
    finally:
        assert ui.stop() == 0


def test_a_server_with_only_the_standard_getflows(tmp_path):
    """A server without hubblepy's batch extension (like upstream Hubble) is read with Observer/GetFlows."""
    from concurrent import futures

    import grpc
    import orjson

    from hubblepy.api.observer import observer_pb2, observer_pb2_grpc
    from hubblepy.codec import dict_to_message

    class StandardObserver(observer_pb2_grpc.ObserverServicer):
        def GetFlows(self, request, context):  # noqa: N802 - gRPC method name
            for line in SAMPLE.read_bytes().splitlines():
                yield dict_to_message(orjson.loads(line), observer_pb2.GetFlowsResponse)
            while context.is_active():
                time.sleep(0.05)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    observer_pb2_grpc.add_ObserverServicer_to_server(StandardObserver(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    ui = UiProcess("--server", f"127.0.0.1:{port}")
    try:
        seen = asyncio.run(_messages(ui.url, "payments", lambda s: _total(s) >= 78))
        assert _total(seen) == 78 and seen[-1]["status"]["state"] == "connected"
    finally:
        assert ui.stop() == 0
        server.stop(0)
