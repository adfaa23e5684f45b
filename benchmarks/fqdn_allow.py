"""Answer-to-allow: how long a DNS answer waits for its toFQDNs allow (root, real eBPF maps).

The node's side of the notify protocol as the lab node runs it (FQDN cache, /32 identity in the
ipcache, incremental policy-map entries, names for flows, then the ack), against a client process
that plays the DNS proxy: it sends one answer, waits for the ack, sends the next. Rows:

* ``answer-to-allow, new IP``: the proxy's send -> ack round trip for an answer whose IP no
  selector had (the entry is written before the ack: this is the time an answer is held);
* ``node apply, new IP``: the node's own part of it (cache + ipcache + policy map), wall time, and
  ``node apply CPU``: the CPU time of that part (what is left when the machine is loaded and the
  wall times include waiting for a CPU);
* ``answer-to-allow, known IP``: the same for a refreshed answer (cache only, nothing to write).

The policy is the seed's api-egress-fqdn; the endpoint's egress map grows by one entry per new IP
(``--answers`` of them). Prints p50/p99 in microseconds and the machine's load; asserts nothing.
Target (issue 9): answer-to-allow p99 < 2 ms.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CLIENT = textwrap.dedent(
    """
    import json, socket, sys, time
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.connect(sys.argv[1])
    n, known = int(sys.argv[2]), int(sys.argv[3])
    out = {"new": [], "known": []}
    def one(i, name, ip, kind):
        msg = json.dumps({"id": i, "endpoint_ip": "10.9.0.2", "name": name, "ips": [ip], "ttl": 300,
                          "cnames": [], "time_ns": time.time_ns()}).encode()
        t = time.perf_counter_ns()
        s.send(msg)
        s.recv(4096)
        out[kind].append(time.perf_counter_ns() - t)
    for i in range(n):
        one(i, f"n{i}.stripe.com.", f"100.{64 + i // 62500}.{i // 250 % 250}.{1 + i % 250}", "new")
    for i in range(known):
        one(n + i, f"n{i % n}.stripe.com.", f"100.64.{i % n // 250}.{1 + i % n % 250}", "known")
    print(json.dumps(out))
    """
)


def _pct(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000


def run(answers: int = 2000, known: int = 1000) -> list[tuple[str, float, float, int]]:
    """Rows (what, p50 µs, p99 µs, samples)."""
    from hubblepy.datapath import Datapath
    from hubblepy.fqdn.cache import FQDNCache
    from hubblepy.fqdn.names import NameManager
    from hubblepy.fqdn.notify import Notification, NotifyServer
    from hubblepy.lab.node import tune_gc_for_flows
    from hubblepy.lab.pods import Pod
    from hubblepy.lab.policysync import PolicySync
    from hubblepy.lab.scenario import PodSpec
    from hubblepy.parser import StaticResolver
    from hubblepy.policy import IdentityAllocator, parse_policies, pod_labels

    policy = (REPO / "hubblepy/lab/scenarios/payments/api-egress-fqdn.yaml").read_text()
    dp = Datapath()
    server = None
    try:
        ids = IdentityAllocator()
        labels = tuple(pod_labels("payments", {"app": "api"}))
        identity = ids.allocate(labels)
        ids.allocate(pod_labels("kube-system", {"k8s-app": "kube-dns"}))
        api = Pod(PodSpec("api", "payments", {"app": "api"}), "10.9.0.2", 1, identity, labels, [])
        dp.upsert_endpoint(1, 1, identity, addresses=[api.ip])
        resolver = StaticResolver()
        sync = PolicySync(ids, resolver, dp)
        cache = FQDNCache(min_ttl=0)
        cache.set_endpoint(1, [api.ip])
        sync.names = NameManager(cache, sync.allocate_fqdn_ip)
        sync.repo.apply(parse_policies(policy))
        sync.sync([api])
        applied: list[int] = []
        applied_cpu: list[int] = []

        def on_answer(note: Notification) -> None:  # as LabNode._on_dns_answer
            start, start_cpu = time.perf_counter_ns(), time.thread_time_ns()
            update = cache.update(note.endpoint_ip, note.name, note.ips, note.ttl)
            sync.learn(update)
            for ip in note.ips:
                resolver.set_dns_names(1, ip, cache.names_for(1, ip))
            applied.append(time.perf_counter_ns() - start)
            applied_cpu.append(time.thread_time_ns() - start_cpu)

        folder = tempfile.mkdtemp(prefix="hubblepy-fqdn-bench-")
        server = NotifyServer(Path(folder) / "notify.sock", on_answer)
        server.start()
        tune_gc_for_flows()
        done = subprocess.run(
            [sys.executable, "-c", CLIENT, str(server.path), str(answers), str(known)],
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        )
        times = json.loads(done.stdout)
        entries = len(dp.policy_entries(1, "egress"))
        new_applied = applied[:answers]
        rows = [
            ("answer-to-allow, new IP", _pct(times["new"], 0.5), _pct(times["new"], 0.99), len(times["new"])),
            ("node apply, new IP", _pct(new_applied, 0.5), _pct(new_applied, 0.99), len(new_applied)),
            (
                "node apply CPU, new IP",
                _pct(applied_cpu[:answers], 0.5),
                _pct(applied_cpu[:answers], 0.99),
                answers,
            ),
            (
                "answer-to-allow, known IP",
                _pct(times["known"], 0.5),
                _pct(times["known"], 0.99),
                len(times["known"]),
            ),
        ]
        print(f"egress entries of the endpoint at the end: {entries}; updates: {sync.fqdn_stats}")
        return rows
    finally:
        if server is not None:
            server.close()
        dp.close()


def main() -> None:
    if os.geteuid() != 0:
        print("fqdn answer-to-allow: skipped (needs root for the eBPF maps)")
        return
    load = os.getloadavg()
    rows = run()
    print(f"\nanswer-to-allow (toFQDNs), load average {load[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'':28s} {'p50 µs':>9s} {'p99 µs':>9s} {'n':>6s}")
    for what, p50, p99, n in rows:
        print(f"{what:28s} {p50:9.0f} {p99:9.0f} {n:6d}")
    print("target: answer-to-allow p99 < 2000 µs")


if __name__ == "__main__":
    main()
