"""L7 proxy benchmark (root): frontend -> api in the payments lab, direct vs our proxy vs HAProxy.

A private payments lab (own directory, netns prefix and ports). The api pod runs a fast HTTP server
(HAProxy answering ``200 {"ok":true}`` itself on port 8081), so the server is not what is measured.
wrk runs in the frontend pod (one thread, ``--connections`` keep-alive connections, GET
/api/v1/orders), three paths in interleaved rounds (median per path):

* ``direct (L4 only)``: frontend -> api:8081 allowed at L4, no proxy;
* ``hubblepy proxy (L7)``: the same with an HTTP rule (GET /api/v1/orders): the datapath redirects
  every connection to the node's proxy, which judges each request and logs two L7 flows;
* ``HAProxy``: HAProxy 1 thread in the node namespace as a reverse proxy in front of api:8081
  (frontend -> node:18080 -> api:8081), the reference HTTP proxy.

Latency: p50/p99 under that load, and p50 with one connection (no queueing: the added latency of a
request). Also: our proxy's CPU per 1k requests (its /proc stat), and its L7 flows: records the proxy sent,
lost, and flows the node published (zero loss wanted). What explains the CPU: the TCP segments per
request on each path (the namespaces' own TCP counters: a proxy path should cost exactly twice the
direct one, no extra packets) and how often per request each proxy was preempted (/proc status).
CPU layouts (``--layout``): the target is stated per proxy core, so by default each proxy runs
``pinned`` (alone on CPU 1, with wrk, the api server and the lab node on CPU 0: the proxy's core does
nothing else), then ``shared`` (every process on both CPUs; on a 2-CPU machine the lab node's L7
parsing then competes with the proxy for the same cores). One table per layout.
Prints tables; asserts nothing.

Usage: sudo .venv/bin/python benchmarks/bench_l7.py [--duration 10] [--connections 32] [--rounds 2]
       [--layout pinned,shared]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PREFIX = os.environ.get("HUBBLEPY_BENCH_NETNS_PREFIX", "hpb7-")
BACKEND_PORT = 8081
HAPROXY_PORT = 18080
LATENCY_SECONDS = 3  # the one-connection run (latency without queueing)

BACKEND_CFG = """\
global
    maxconn 4096
    nbthread 1
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend api
    bind *:{port}
    http-request return status 200 content-type application/json string "{{\\"ok\\":true}}"
"""
PROXY_CFG = """\
global
    maxconn 4096
    nbthread 1
defaults
    mode http
    option http-keep-alive
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend fe
    bind {listen}:{port}
    default_backend api
backend api
    server api {api}:{backend} pool-max-conn 1000
"""


def policy(l7: bool) -> str:
    rules = "\n          rules: {http: [{method: GET, path: /api/v1/orders}]}" if l7 else ""
    return (
        textwrap.dedent(f"""\
        apiVersion: cilium.io/v2
        kind: CiliumNetworkPolicy
        metadata: {{name: bench-api, namespace: payments}}
        spec:
          endpointSelector: {{matchLabels: {{app: api}}}}
          ingress:
            - fromEndpoints: [{{matchLabels: {{app: frontend}}}}]
              toPorts:
                - ports: [{{port: "{BACKEND_PORT}", protocol: TCP}}]""")
        + rules
        + textwrap.dedent(f"""
        ---
        apiVersion: cilium.io/v2
        kind: CiliumNetworkPolicy
        metadata: {{name: bench-frontend, namespace: payments}}
        spec:
          endpointSelector: {{matchLabels: {{app: frontend}}}}
          egress:
            - toEndpoints: [{{matchLabels: {{app: api}}}}]
              toPorts: [{{ports: [{{port: "{BACKEND_PORT}", protocol: TCP}}]}}]
            - toEntities: [host]
              toPorts: [{{ports: [{{port: "{HAPROXY_PORT}", protocol: TCP}}]}}]
        """)
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("HUBBLE_")}
        self.env.update(
            HUBBLEPY_LAB_DIR=str(folder / "lab"),
            HUBBLEPY_LAB_NETNS_PREFIX=PREFIX,
            PYTHONPATH=str(REPO),
        )

    def lab(self, *args: str, timeout: float = 300) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "hubblepy.cli.lab", *args],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=REPO,
            timeout=timeout,
        )
        if out.returncode != 0:
            raise RuntimeError(f"hubble lab {' '.join(args)}: {out.stderr.strip() or out.stdout.strip()}")
        return out.stdout

    def state(self) -> dict:
        return json.loads(self.lab("status", "-o", "json"))

    def apply(self, text: str) -> None:
        path = self.folder / "bench-policy.yaml"
        path.write_text(text)
        self.lab("policy", "apply", str(path))


def wrk(
    netns: str, url: str, duration: int, connections: int, prefix: list[str] | None = None
) -> dict[str, float]:
    out = subprocess.run(
        [
            *(prefix or []),
            "ip",
            "netns",
            "exec",
            netns,
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=duration + 60,
    ).stdout
    figures: dict[str, float] = {"rps": 0.0, "p50": 0.0, "p99": 0.0, "requests": 0.0, "errors": 0.0}
    if m := re.search(r"Requests/sec:\s+([\d.]+)", out):
        figures["rps"] = float(m.group(1))
    if m := re.search(r"(\d+) requests in", out):
        figures["requests"] = float(m.group(1))
    if m := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out):
        figures["errors"] += float(m.group(1))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        figures["errors"] += sum(float(x) for x in m.groups())
    for key, label in (("p50", "50%"), ("p99", "99%")):
        if m := re.search(rf"{label}\s+([\d.]+)(us|ms|s)\b", out):
            value = float(m.group(1))
            figures[key] = (
                value / 1000 if m.group(2) == "us" else value * 1000 if m.group(2) == "s" else value
            )
    return figures


def drained(lab: Lab, quiet: float = 2.0, limit: float = 60.0) -> dict:
    """The proxy's counters once the node has published everything the proxy sent (or stopped
    making progress for ``quiet`` seconds); ``_at`` is when the last flow was published."""
    time.sleep(1.5)  # the proxy rewrites its counters every second
    last, last_change = -1, time.monotonic()
    at = last_change
    deadline = last_change + limit
    while True:
        state = lab.state()["proxy"]
        published = int(state.get("published", 0))
        now = time.monotonic()
        if published != last:
            last, last_change, at = published, now, now
        if published >= int(state.get("sent", 0)) or now - last_change > quiet or now > deadline:
            state["_at"] = at
            return state
        time.sleep(0.2)


def tcp_segments(netns: str) -> int:
    """TCP segments received plus sent in a namespace (its own TCP MIB)."""
    out = subprocess.run(
        ["ip", "netns", "exec", netns, "cat", "/proc/net/snmp"], capture_output=True, text=True, check=True
    ).stdout
    names, values = [line.split() for line in out.splitlines() if line.startswith("Tcp:")][:2]
    row = dict(zip(names, values, strict=True))
    return int(row["InSegs"]) + int(row["OutSegs"])


def involuntary_switches(pid: int) -> int:
    """How often the process was preempted (context switches it did not ask for)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("nonvoluntary_ctxt_switches:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


LAYOUTS = {
    "pinned": "the proxy under test (ours or HAProxy) alone on CPU 1; wrk, the api server and the lab node on CPU 0",
    "shared": "every process on both CPUs (the scheduler's choice)",
}


def pin(pid: int, cpus: str) -> None:
    """Every thread of ``pid`` to ``cpus`` (a taskset list)."""
    subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(pid)], capture_output=True, check=False)


def measure(
    lab: Lab,
    layout: str,
    args: argparse.Namespace,
    frontend: dict,
    direct_url: str,
    haproxy_url: str,
    node_pid: int,
    backend_pids: list[int],
    haproxy_pid: int,
    namespaces: tuple[str, ...],
) -> dict:
    """``args.rounds`` interleaved rounds of the three paths in one CPU layout."""
    alone, others = ("1", "0") if layout == "pinned" else ("0-1", "0-1")
    for pid in (node_pid, *backend_pids):
        pin(pid, others)
    pin(haproxy_pid, alone)
    client = ["taskset", "-c", others]
    results: dict[str, list[dict[str, float]]] = {"direct": [], "proxy": [], "haproxy": []}
    cpu: list[float] = []
    haproxy_cpu: list[float] = []
    node_cpu: dict[str, list[float]] = {"direct": [], "proxy": [], "haproxy": []}
    flows = {"requests": 0.0, "sent": 0, "lost": 0, "published": 0, "seconds": 0.0}
    compiled: set[bool] = set()  # how the proxy's modules were loaded (its stats say)

    def segments() -> int:  # every TCP segment of the three namespaces the paths cross
        return sum(tcp_segments(ns) for ns in namespaces)

    for _ in range(args.rounds):
        lab.apply(policy(l7=False))
        for key, url in (("direct", direct_url), ("haproxy", haproxy_url)):
            haproxy_cpu0, node_cpu0 = cpu_seconds(haproxy_pid), cpu_seconds(node_pid)
            segments0, preempted0 = segments(), involuntary_switches(haproxy_pid)
            run = wrk(frontend["netns"], url, args.duration, args.connections, client)
            run["segments"] = (segments() - segments0) / max(run["requests"], 1)
            if key == "haproxy":
                run["preempted"] = (involuntary_switches(haproxy_pid) - preempted0) / max(run["requests"], 1)
            node_cpu[key].append((cpu_seconds(node_pid) - node_cpu0) / max(run["requests"], 1) * 1000 * 1000)
            if key == "haproxy":
                haproxy_cpu.append(
                    (cpu_seconds(haproxy_pid) - haproxy_cpu0) / max(run["requests"], 1) * 1000 * 1000
                )
            run["p50_1"] = wrk(frontend["netns"], url, LATENCY_SECONDS, 1, client)["p50"]
            results[key].append(run)
        lab.apply(policy(l7=True))
        before = lab.state()["proxy"]
        compiled.add(bool(before.get("compiled")))
        pid = int(before["pid"])
        pin(pid, alone)
        cpu0, node_cpu0, t0 = cpu_seconds(pid), cpu_seconds(node_pid), time.monotonic()
        segments0, preempted0 = segments(), involuntary_switches(pid)
        run = wrk(frontend["netns"], direct_url, args.duration, args.connections, client)
        run["segments"] = (segments() - segments0) / max(run["requests"], 1)
        run["preempted"] = (involuntary_switches(pid) - preempted0) / max(run["requests"], 1)
        cpu.append((cpu_seconds(pid) - cpu0) / max(run["requests"], 1) * 1000 * 1000)
        after = drained(lab)  # the node's CPU counts until it has published every flow
        node_cpu["proxy"].append((cpu_seconds(node_pid) - node_cpu0) / max(run["requests"], 1) * 1000 * 1000)
        flows["seconds"] += float(after["_at"]) - t0
        flows["requests"] += run["requests"]
        for key in ("sent", "lost", "published"):
            flows[key] += int(after.get(key, 0)) - int(before.get(key, 0))
        run["p50_1"] = wrk(frontend["netns"], direct_url, LATENCY_SECONDS, 1, client)["p50"]
        results["proxy"].append(run)
    return {
        "results": results,
        "cpu": cpu,
        "haproxy_cpu": haproxy_cpu,
        "node_cpu": node_cpu,
        "flows": flows,
        "compiled": compiled,
    }


def report(layout: str, m: dict, args: argparse.Namespace) -> None:
    results, cpu, haproxy_cpu, node_cpu, flows = (
        m["results"],
        m["cpu"],
        m["haproxy_cpu"],
        m["node_cpu"],
        m["flows"],
    )
    load = os.getloadavg()[0]
    print(
        f"\nL7 benchmark, {layout} CPUs ({LAYOUTS[layout]}): frontend -> api GET /api/v1/orders, "
        f"wrk -t1 -c{args.connections} -d{args.duration}s, {args.rounds} rounds (median), "
        f"load average {load:.1f} on {os.cpu_count()} CPUs\n"
    )
    print(
        f"{'path':<34}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'vs HAProxy':>12}"
        f"{'p50 ms, 1 conn':>16}"
    )
    med = {k: {f: statistics.median(r[f] for r in v) for f in v[0]} for k, v in results.items()}
    names = {
        "direct": "direct (L4 only)",
        "proxy": "hubblepy proxy (L7 rules)",
        "haproxy": "HAProxy 1 thread (reverse proxy)",
    }
    for key in ("direct", "proxy", "haproxy"):
        row = med[key]
        ratio = row["rps"] / med["haproxy"]["rps"] if med["haproxy"]["rps"] else 0.0
        print(
            f"{names[key]:<34}{row['rps']:>10.0f}{row['p50']:>9.2f}{row['p99']:>9.2f}{row['errors']:>8.0f}"
            f"{ratio:>11.2f}x{row['p50_1']:>16.3f}"
        )
    print(
        f"\nadded p50 latency on one connection (proxy - direct): "
        f"{med['proxy']['p50_1'] - med['direct']['p50_1']:.3f} ms; "
        f"CPU per 1k requests: our proxy {statistics.median(cpu):.1f} ms, "
        f"HAProxy {statistics.median(haproxy_cpu):.1f} ms"
    )
    print(
        "lab node CPU per 1k requests (its datapath events; with the proxy also the L7 flows it parses): "
        + ", ".join(f"{names[k]} {statistics.median(v):.1f} ms" for k, v in node_cpu.items())
    )
    print(
        "TCP segments per request (in + out, frontend, api and node namespaces): "
        + ", ".join(f"{names[k]} {med[k]['segments']:.2f}" for k in ("direct", "proxy", "haproxy"))
        + f"; preemptions per request: our proxy {med['proxy']['preempted']:.2f}, "
        f"HAProxy {med['haproxy']['preempted']:.2f}"
    )
    builds = {True: "compiled by mypyc (hubblepy/native.py)", False: "Python source (no fresh mypyc build)"}
    print("our proxy ran from: " + " and ".join(builds[c] for c in sorted(m["compiled"], reverse=True)))
    expected = int(flows["requests"]) * 2
    rate = flows["published"] / flows["seconds"] if flows["seconds"] else 0.0
    zero = flows["published"] == flows["sent"] >= expected and not flows["lost"]
    print(
        f"L7 flows: {int(flows['requests'])} requests -> {flows['sent']} records sent by the proxy, "
        f"{flows['lost']} lost, {flows['published']} flows published by the node ({rate:.0f}/s); "
        f"expected {expected}: {'zero loss' if zero else 'LOSS'}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--layout",
        default="pinned,shared",
        help="CPU layouts to measure, comma-separated: pinned (each proxy on one core of its own, "
        "as the target is stated) and shared",
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_l7: needs root (the lab's namespaces and eBPF datapath)")
        return 0
    for tool in ("wrk", "haproxy"):
        if shutil.which(tool) is None:
            print(f"bench_l7: {tool} is missing (scripts/bootstrap.sh installs it)")
            return 0
    folder = Path(tempfile.mkdtemp(prefix="hubblepy-bench-l7-"))
    lab = Lab(folder)
    haproxies: list[Path] = []
    try:
        lab.lab(
            "up",
            "--listen-address",
            f"127.0.0.1:{free_port()}",
            "--relay-address",
            f"127.0.0.1:{free_port()}",
            "--metrics-address",  # the node's metrics count every L7 flow: on, but on a port of its own
            f"127.0.0.1:{free_port()}",
        )
        state = lab.state()
        pods = {f"{p['namespace']}/{p['name']}": p for p in state["pods"]}
        api, frontend = pods["payments/api"], pods["payments/frontend"]
        node_ns, gateway = state["node_netns"], state["gateway"]
        for name, ns, cfg in (
            ("backend", api["netns"], BACKEND_CFG.format(port=BACKEND_PORT)),
            (
                "proxy",
                node_ns,
                PROXY_CFG.format(listen=gateway, port=HAPROXY_PORT, api=api["ip"], backend=BACKEND_PORT),
            ),
        ):
            path = folder / f"haproxy-{name}.cfg"
            path.write_text(cfg)
            pid_file = folder / f"haproxy-{name}.pid"
            subprocess.run(
                ["ip", "netns", "exec", ns, "haproxy", "-f", str(path), "-D", "-p", str(pid_file)], check=True
            )
            haproxies.append(pid_file)
        direct_url = f"http://{api['ip']}:{BACKEND_PORT}/api/v1/orders"
        haproxy_url = f"http://{gateway}:{HAPROXY_PORT}/api/v1/orders"
        # the lab node (one process: datapath events, the access-log reader and L7 parser, the
        # flow store and gRPC) shares the machine's CPUs with the proxies; its CPU per 1k requests
        node_pid = int((folder / "lab" / "node.pid").read_text().strip())
        backend_pids = [int(x) for x in haproxies[0].read_text().split()]
        haproxy_pid = int(haproxies[-1].read_text().split()[0])  # the reverse proxy (1 process)
        namespaces = (frontend["netns"], api["netns"], node_ns)
        layouts = [lay for lay in args.layout.split(",") if lay]
        if (os.cpu_count() or 1) < 2:
            layouts = ["shared"]  # one CPU: nothing to pin
        measured = {
            layout: measure(
                lab,
                layout,
                args,
                frontend,
                direct_url,
                haproxy_url,
                node_pid,
                backend_pids,
                haproxy_pid,
                namespaces,
            )
            for layout in layouts
        }
        for layout in layouts:
            report(layout, measured[layout], args)
    finally:
        for pid_file in haproxies:
            try:
                for line in pid_file.read_text().split():
                    os.kill(int(line), 15)
            except (OSError, ValueError):
                pass
        try:
            lab.lab("down", timeout=120)
        except RuntimeError as exc:
            print(f"bench_l7: lab down: {exc}")
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
