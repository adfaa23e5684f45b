"""NodeProxy, the node's handle on its proxy: state file, SIGHUP to a real proxy, restart delays, status."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from hubblepy import native
from hubblepy.policy import (
    CookieJar,
    Endpoint,
    IdentityAllocator,
    compile_policies,
    parse_policies,
    pod_labels,
)
from hubblepy.proxy.node import NodeProxy
from hubblepy.proxy.state import load_state

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proxytools import SEED  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def _compiled():
    ids = IdentityAllocator()
    eps = []
    for n, name in enumerate(("frontend", "api")):
        labels = pod_labels("payments", {"app": name})
        eps.append(Endpoint(100 + n, ids.allocate(labels), labels))
    cookies = CookieJar()
    return (
        ids,
        eps,
        cookies,
        compile_policies(parse_policies(SEED.format(port=8080)), eps, dict(ids.items()), cookies),
    )


def test_update_writes_a_loadable_state_and_a_running_proxy_reloads_it(tmp_path) -> None:
    ids, eps, cookies, compiled = _compiled()
    proxy = NodeProxy(tmp_path, "unused-netns", port=0)
    args = dict(
        l7=compiled.l7,
        cookies=cookies,
        policy_revision=3,
        uids={},
        endpoints=[(101, "10.244.0.11", eps[1].identity)],
        ipcache=[("10.244.0.10/32", eps[0].identity)],
        identities=dict(ids.items()),
        node={"name": "lab-node", "ipv4": "10.244.0.1"},
    )
    proxy.update(**args)
    state = load_state(proxy.state_path)
    assert state.revision == 1 and state.identity_of("10.244.0.10") == eps[0].identity
    rules = state.rule_sets(state.endpoint("10.244.0.10"), state.endpoint("10.244.0.11"), 8080)
    assert rules and rules[0][1].redirected
    assert next(iter(state.rules.values()))["policy"]["revision"] == "3"
    argv = proxy.argv()
    assert argv[argv.index("--state") + 1] == str(proxy.state_path) and "--transparent" in argv
    # a real proxy process (not transparent, loopback) that reloads on the SIGHUP update() sends
    argv = [a for a in argv if a != "--transparent"]
    argv[argv.index("--listen") + 1] = "127.0.0.1:0"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert "listening" in proc.stdout.readline()
        proxy.started(proc.pid)
        proxy.update(**args)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proxy.status().get("loaded_revision") != 2:
            time.sleep(0.1)
        status = proxy.status()
        assert status["pid"] == proc.pid and status["running"]
        assert status["loaded_revision"] == 2
        assert {"requests", "denied", "sent", "lost"} <= status.keys()
        # the node starts the proxy through its plain-Python launcher, so a fresh mypyc build is used
        fresh_build = native.stale_reason() is None and os.environ.get("HUBBLEPY_NATIVE") != "0"
        assert status["compiled"] is fresh_build
    finally:
        proc.terminate()
        proc.wait(5)
        proc.stdout.close()
        proc.stderr.close()


def test_restart_delay_grows_and_is_bounded(tmp_path) -> None:
    proxy = NodeProxy(tmp_path, "ns")
    assert proxy.restart_delay() == 0.0 and not proxy.due_for_restart()
    delays = []
    for _ in range(8):
        proxy.exited(1)
        delays.append(proxy.restart_delay())
    assert delays == sorted(delays) and delays[0] == 0.2 and delays[-1] == 5.0
    assert json.loads(json.dumps(proxy.status()))["restarts"] == 8
