"""`hubble ui` at scale: 200 workloads, 5,000 flows/s from a real replay agent, in headless chromium.

A generated flows file (200 workloads in namespace ``bench``, each calling three others, plus world
and host; ~7% drops and ~3% AUDIT on a few edges) is replayed by a `hubble agent` at ``--rate``
flows/s; `hubble ui --server` follows it; Debian's chromium opens the page. Printed:

* the rates the agent published and the UI server took in;
* time to first map (page navigation -> first edges drawn) and to the full map (all boxes);
* every ``--sample`` seconds over ``--minutes``: the page's JS heap (CDP ``Performance.getMetrics``),
  the chromium processes' RSS, the UI server's RSS and CPU, WebSocket bytes/s and messages/s that
  reach the page (edge deltas, not flows), and the page's frame delay (``requestAnimationFrame``
  round trip, a responsiveness probe);
* a click on a red edge -> its flow table rendered, in ms;
* the machine's load average (the machine is shared: read the figures with it).

Run: ``python benchmarks/bench_ui.py [--minutes 10] [--rate 5000]`` (default 2 minutes). No assertions.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hubblepy.sample.flowgen import FlowFactory, Pod, write_jsonl  # noqa: E402

WORKLOADS = 200
NAMESPACE = "bench"


def make_flows(path: Path, count: int, seed: int = 5) -> int:
    """``count`` flows over 200 workloads; returns the number of distinct edges."""
    rng = random.Random(seed)
    factory = FlowFactory(seed)
    pods = [
        Pod(NAMESPACE, f"svc-{i:03d}-5c8d7f9b4-abcde", f"svc-{i:03d}", 20000 + i, 3000 + i,
            f"10.250.{i // 250}.{i % 250 + 1}", f"svc-{i:03d}")
        for i in range(WORKLOADS)
    ]  # fmt: skip
    world = {"identity": 2, "labels": ["reserved:world"]}
    host = {"identity": 1, "labels": ["reserved:host"]}
    edges = []
    for i, pod in enumerate(pods):
        for j in rng.sample(range(WORKLOADS), 3):
            if j != i:
                edges.append(
                    (pod.endpoint(), pods[j].endpoint(), pod.ip, pods[j].ip, rng.choice((80, 8080, 5432)))
                )
        if i % 20 == 0:
            edges.append((pod.endpoint(), world, pod.ip, "192.0.2.10", 443))
            edges.append((host, pod.endpoint(), "10.250.9.1", pod.ip, 8080))
    drop_edges = set(rng.sample(range(len(edges)), len(edges) // 15))
    audit_edges = set(rng.sample(range(len(edges)), len(edges) // 30))

    def records():
        for _ in range(count):
            k = rng.randrange(len(edges))
            src, dst, sip, dip, port = edges[k]
            verdict = "FORWARDED"
            if k in drop_edges and rng.random() < 0.5:
                verdict = "DROPPED"
            elif k in audit_edges and rng.random() < 0.5:
                verdict = "AUDIT"
            factory.tick(0.2)
            l4 = {
                "TCP": {
                    "source_port": rng.randrange(32768, 61000),
                    "destination_port": port,
                    "flags": {"SYN": True},
                }
            }
            yield factory.flow(
                src, dst, sip, dip, node="lab-worker", verdict=verdict, l4=l4, summary="TCP Flags: SYN",
                event_type={"type": 1 if verdict == "DROPPED" else 5}, direction="INGRESS",
                drop_reason=133 if verdict == "DROPPED" else 0,
                drop_desc="POLICY_DENIED" if verdict == "DROPPED" else "",
            )  # fmt: skip

    with path.open("wb") as out:
        write_jsonl(records(), out)
    return len(edges)


def start_agent(flows: Path, rate: float) -> tuple[subprocess.Popen, str]:
    argv = [sys.executable, "-m", "hubblepy.observer", "--node-name", "bench", "--listen-address", "127.0.0.1:0",
            "--replay", str(flows), "--rate", str(rate), "--event-buffer-capacity", "65535"]  # fmt: skip
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    line = proc.stderr.readline().decode()
    m = re.search(r"listening on (\S+)", line)
    if not m:
        proc.kill()
        raise SystemExit(f"cannot start the agent: {line}")
    return proc, m.group(1)


def start_ui(server: str) -> tuple[subprocess.Popen, str]:
    argv = [sys.executable, "-m", "hubblepy.cli", "ui", "--server", server, "--listen-address", "127.0.0.1:0",
            "--last", "0"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    line = proc.stdout.readline()
    if "serving" not in line:
        proc.kill()
        raise SystemExit(f"cannot start hubble ui: {line}")
    return proc, line.rsplit(" ", 1)[1].strip()


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_s(pid: int) -> float:
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def chromium_rss_mb() -> float:
    """RSS of the chromium processes under this benchmark (shared pages counted per process)."""
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(_stat(int(entry.name))[1])
                names[int(entry.name)] = (entry / "comm").read_text().strip()
            except (OSError, IndexError):
                continue
    me = os.getpid()
    total = 0.0
    for pid, name in names.items():
        if "chrom" not in name:
            continue
        p = pid
        while p > 1 and p != me:
            p = parents.get(p, 1)
        if p == me:
            with contextlib.suppress(OSError):
                total += rss_mb(pid)
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--rate", type=float, default=5000.0)
    ap.add_argument("--sample", type=float, default=20.0, help="seconds between samples")
    ap.add_argument(
        "--flows", type=int, default=60000, help="flows in the generated file (replayed in a loop)"
    )
    args = ap.parse_args()
    chromium = shutil.which("chromium")
    if not chromium:
        raise SystemExit("Debian's chromium is needed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="hubblepy-bench-ui-") as tmp:
        flows = Path(tmp) / "flows.jsonl"
        t0 = time.monotonic()
        edge_count = make_flows(flows, args.flows)
        print(
            f"generated {args.flows} flows over {WORKLOADS} workloads, {edge_count} edges ({time.monotonic() - t0:.1f}s)"
        )
        agent, address = start_agent(flows, args.rate)
        ui, url = start_ui(address)
        try:
            run(args, chromium, url, ui, sync_playwright, address)
        finally:
            for proc in (ui, agent):
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
    print(
        f"load average (1, 5, 15 min): {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores"
    )


def _status(url: str) -> dict:
    import json
    import urllib.request

    with urllib.request.urlopen(url + "/api/status", timeout=10) as r:
        return json.loads(r.read())


def agent_seen(address: str) -> int:
    """Flows the agent has published so far (ServerStatus.seen_flows)."""
    import grpc

    from hubblepy.api.observer import observer_pb2, observer_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        stub = observer_pb2_grpc.ObserverStub(channel)
        return stub.ServerStatus(observer_pb2.ServerStatusRequest(), timeout=10).seen_flows


def run(args, chromium: str, url: str, ui: subprocess.Popen, sync_playwright, agent: str) -> None:  # noqa: ANN001
    time.sleep(5)  # let the server see every edge once
    agent_start = (time.monotonic(), agent_seen(agent))
    before = _status(url)
    print(f"server before the page: {before['stats']['flows']} flows, {before['stats']['nodes']} boxes, "
          f"{before['stats']['edges']} edges, {before['stats']['rate']} flows/s taken in")  # fmt: skip
    ws = {"bytes": 0, "messages": 0}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        cdp = page.context.new_cdp_session(page)
        cdp.send("Performance.enable")
        cdp.send("Network.enable")

        def on_frame(event: dict) -> None:
            ws["bytes"] += len(event["response"]["payloadData"])
            ws["messages"] += 1

        cdp.on("Network.webSocketFrameReceived", on_frame)
        t0 = time.monotonic()
        page.goto(f"{url}/?namespace={NAMESPACE}")
        page.wait_for_selector("body[data-map-ready='1']", timeout=120_000)
        first = time.monotonic() - t0
        page.wait_for_function(f"() => window.hubbleUI.cy.nodes().length >= {WORKLOADS}", timeout=120_000)
        full = time.monotonic() - t0
        marks = page.evaluate(
            "() => Object.fromEntries(['ws-open', 'snapshot', 'edges-added', 'layout', 'first-map'].map((n) =>"
            " [n, Math.round((performance.getEntriesByName(n)[0] || {startTime: -1}).startTime)]))"
        )
        dom = page.evaluate(
            "() => Math.round(performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd)"
        )
        print(f"in the page (ms after navigation start): DOM ready {dom}, WebSocket open {marks['ws-open']}, "
              f"snapshot received {marks['snapshot']}, its edges added {marks['edges-added']}, laid out {marks['layout']}, "
              f"drawn {marks['first-map']}")  # fmt: skip
        boxes = page.evaluate("() => [window.hubbleUI.cy.nodes().length, window.hubbleUI.cy.edges().length]")
        print(
            f"time to first map: {first * 1000:.0f} ms; to the full map ({boxes[0]} boxes, {boxes[1]} edges): {full * 1000:.0f} ms"
        )

        end = time.monotonic() + args.minutes * 60
        start = time.monotonic()
        last = (start, ws["bytes"], ws["messages"], cpu_s(ui.pid), _status(url)["stats"]["flows"])
        print(f"{'t (s)':>6} {'JS heap MB':>10} {'chromium RSS MB':>15} {'server RSS MB':>13} {'server CPU %':>12} "
              f"{'flows/s in':>10} {'WS KB/s':>8} {'WS msg/s':>8} {'frame ms':>8}")  # fmt: skip
        while time.monotonic() < end:
            time.sleep(min(args.sample, max(0.0, end - time.monotonic())))
            now = time.monotonic()
            metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
            frame = page.evaluate(
                "() => new Promise((r) => { const t = performance.now(); requestAnimationFrame(() => r(performance.now() - t)); })"
            )
            flows_now = _status(url)["stats"]["flows"]
            cpu_now = cpu_s(ui.pid)
            dt = now - last[0]
            print(f"{now - start:6.0f} {metrics.get('JSHeapUsedSize', 0) / 2**20:10.1f} {chromium_rss_mb():15.0f} "
                  f"{rss_mb(ui.pid):13.0f} {100 * (cpu_now - last[3]) / dt:12.0f} {(flows_now - last[4]) / dt:10.0f} "
                  f"{(ws['bytes'] - last[1]) / dt / 1024:8.1f} {(ws['messages'] - last[2]) / dt:8.1f} {frame:8.1f}",
                  flush=True)  # fmt: skip
            last = (now, ws["bytes"], ws["messages"], cpu_now, flows_now)

        red = page.evaluate("() => window.hubbleUI.cy.edges('.dropped').first().id()")
        renders = page.evaluate("() => Number(document.body.dataset.tableRenders || 0)")
        t0 = time.monotonic()
        page.evaluate("(id) => { window.hubbleUI.cy.getElementById(id).emit('tap'); }", red)
        page.wait_for_function(f"() => Number(document.body.dataset.tableRenders || 0) > {renders}")
        print(f"red edge tapped -> its flow table rendered: {(time.monotonic() - t0) * 1000:.0f} ms")
        browser.close()
    after = _status(url)
    print(
        f"server after {args.minutes:g} min: {after['stats']['flows']} flows taken in, {after['stats']['edges']} edges"
    )
    seconds = time.monotonic() - agent_start[0]
    print(f"the agent published {(agent_seen(agent) - agent_start[1]) / seconds:.0f} flows/s on average "
          f"over those {seconds:.0f} s (its --rate: {args.rate:g})")  # fmt: skip


if __name__ == "__main__":
    main()
