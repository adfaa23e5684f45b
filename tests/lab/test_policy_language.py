"""The policy language on the real eBPF datapath: every rule kind with its allowed and its denied case,
proved by real traffic between lab pods (and the world outside the cluster) and by the flows' verdicts.

One private lab (own state dir, netns prefix ``hpq-``, ports) with the policy-lab scenario; every test
applies its policies, checks, and deletes them again, so the pods start each test selected by nothing.
"""

from __future__ import annotations

import contextlib
import os
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from labtools import Lab, needs_root  # noqa: E402

pytestmark = pytest.mark.root

PREFIX = os.environ.get("HUBBLEPY_TEST_NETNS_PREFIX", "hpx-").rstrip("-") + "q-"  # own per parallel run
SCENARIO = Path(__file__).resolve().parents[2] / "hubblepy" / "lab" / "scenarios" / "policy-lab.yaml"
WORLD_IN, WORLD_HOLE, WORLD_OTHER = "192.0.2.10", "192.0.2.200", "198.51.100.10"
CIDR_SCOPE = 1 << 24


def _lab_netns() -> list[str]:
    import subprocess

    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(PREFIX)]


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Iterator[Lab]:
    needs_root()
    try:
        from hubblepy.datapath import DatapathUnavailable, check_environment
    except ImportError as exc:
        pytest.skip(f"datapath package not importable: {exc}")
    try:
        check_environment()
    except DatapathUnavailable as exc:
        pytest.skip(str(exc))
    if _lab_netns():
        pytest.skip(f"namespaces with the test prefix {PREFIX} exist already")
    lab = Lab(tmp_path_factory.mktemp("policy-lab") / "state")
    lab.env["HUBBLEPY_LAB_NETNS_PREFIX"] = PREFIX
    lab.files = tmp_path_factory.mktemp("policies")  # type: ignore[attr-defined]
    try:
        up = lab.up("--scenario", str(SCENARIO))
        assert up.returncode == 0, up.stderr
        lab.ips = {f"{p['namespace']}/{p['name']}": p["ip"] for p in lab.state()["pods"]}  # type: ignore[attr-defined]
        yield lab
    finally:
        lab.down()
        assert _lab_netns() == []


@contextlib.contextmanager
def policies(lab: Lab, name: str, text: str) -> Iterator[None]:
    path = lab.files / f"{name}.yaml"  # type: ignore[attr-defined]
    path.write_text(textwrap.dedent(text))
    out = lab.run("policy", "apply", str(path))
    assert out.returncode == 0, out.stderr
    try:
        yield
    finally:
        out = lab.run("policy", "delete", str(path))
        assert out.returncode == 0, out.stderr


def http(lab: Lab, pod: str, url: str, *extra: str) -> str:
    return lab.exec(pod, "curl", "-s", "-m", "2", "-o", "/dev/null", "-w", "%{http_code}", *extra, url).stdout


def tcp(lab: Lab, pod: str, ip: str, port: int, source: str = "") -> bool:
    """True when a TCP connection to ip:port is accepted within 2 s (from ``source`` if given)."""
    script = f"import socket; socket.create_connection(({ip!r}, {port}), 2, source_address=({source!r}, 0))"
    return lab.exec(pod, "python3", "-c", script).returncode == 0


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def flows(lab: Lab, since: str, *filters: str, want: int = 1) -> list[dict]:
    """Flows since ``since`` matching ``filters``; waits briefly for at least ``want`` of them."""
    found: list[dict] = []
    for _ in range(20):
        found = lab.flows("--since", since, *filters)
        if len(found) >= want:
            break
        time.sleep(0.25)
    return found


def ip(lab: Lab, pod: str) -> str:
    return lab.ips[pod]  # type: ignore[attr-defined]


def test_endpoint_selected_by_nothing_is_default_allow(lab: Lab) -> None:
    assert http(lab, "shop/client", f"http://{ip(lab, 'shop/web')}:8080/") == "200"
    assert http(lab, "shop/client", f"http://{WORLD_OTHER}/") == "200"
    assert http(lab, "world", f"http://{ip(lab, 'shop/web')}:8080/") == "200"
    assert tcp(lab, "tools/debug", ip(lab, "shop/db"), 5432)


def test_cidr_set_with_except(lab: Lab) -> None:
    policy = """\
        apiVersion: cilium.io/v2
        kind: CiliumNetworkPolicy
        metadata: {name: client-to-testnet, namespace: shop}
        spec:
          endpointSelector: {matchLabels: {app: client}}
          egress:
            - toCIDRSet: [{cidr: 192.0.2.0/24, except: [192.0.2.128/25]}]
              toPorts: [{ports: [{port: "80", protocol: TCP}]}]
        """
    since = now()
    with policies(lab, "cidr", policy):
        assert http(lab, "shop/client", f"http://{WORLD_IN}/") == "200"
        assert http(lab, "shop/client", f"http://{WORLD_HOLE}/") == "000"  # the except hole
        assert http(lab, "shop/client", f"http://{WORLD_OTHER}/") == "000"  # outside the CIDR
        cidrs = lab.state()["cidr_identities"]
        assert set(cidrs) == {"192.0.2.0/24", "192.0.2.128/25"}
        fwd = flows(lab, since, "--to-ip", WORLD_IN, "--verdict", "FORWARDED", "--type", "policy-verdict")
        assert fwd and fwd[0]["destination"]["identity"] == cidrs["192.0.2.0/24"] >= CIDR_SCOPE
        assert "cidr:192.0.2.0/24" in fwd[0]["destination"]["labels"]
        hole = flows(lab, since, "--to-ip", WORLD_HOLE, "--verdict", "DROPPED")
        assert hole and hole[0]["destination"]["identity"] == cidrs["192.0.2.128/25"]
        other = flows(lab, since, "--to-ip", WORLD_OTHER, "--verdict", "DROPPED")
        assert other and other[0]["destination"]["identity"] == 2  # world: no prefix covers it
    assert lab.state()["cidr_identities"] == {}  # deleted with the policy (ipcache entries too)
    assert http(lab, "shop/client", f"http://{WORLD_HOLE}/") == "200"


def test_to_entities_world_allows_world_not_cluster(lab: Lab) -> None:
    policy = """\
        apiVersion: cilium.io/v2
        kind: CiliumNetworkPolicy
        metadata: {name: client-to-world, namespace: shop}
        spec:
          endpointSelector: {matchLabels: {app: client}}
          egress:
            - toEntities: [world]
        """
    since = now()
    with policies(lab, "world", policy):
        assert http(lab, "shop/client", f"http://{WORLD_OTHER}/") == "200"
        assert http(lab, "shop/client", f"http://{ip(lab, 'shop/web')}:8080/") == "000"
        ok = flows(lab, since, "--to-ip", WORLD_OTHER, "--verdict", "FORWARDED", "--type", "policy-verdict")
        assert ok and ok[0]["destination"]["labels"] == ["reserved:world"]
        assert ok[0]["policy_match_type"] == 1  # L3-only
        bad = flows(lab, since, "--to-pod", "shop/web", "--verdict", "DROPPED")
        assert bad and bad[0]["drop_reason_desc"] == "POLICY_DENIED"


def test_from_entities_world_and_from_cidr(lab: Lab) -> None:
    policy = """\
        apiVersion: cilium.io/v2
        kind: CiliumNetworkPolicy
        metadata: {name: web-from-outside, namespace: shop}
        spec:
          endpointSelector: {matchLabels: {app: web}}
          ingress:
            - fromCIDR: [192.0.2.0/25]
              toPorts: [{ports: [{port: "9000", protocol: TCP}]}]
            - fromEntities: [world]
              toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
        """
    web = ip(lab, "shop/web")
    since = now()
    with policies(lab, "from-world", policy):
        assert http(lab, "world", f"http://{web}:8080/") == "200"  # world entity
        assert http(lab, "shop/client", f"http://{web}:8080/") == "000"  # cluster pod: not world
        assert tcp(lab, "world", web, 9000)  # from 192.0.2.10: inside the CIDR
        assert not tcp(lab, "world", web, 9000, source=WORLD_OTHER)  # outside 192.0.2.0/25
        ok = flows(lab, since, "--from-ip", WORLD_IN, "--to-pod", "shop/web", "--verdict", "FORWARDED")
        assert ok
        bad = flows(lab, since, "--from-ip", WORLD_OTHER, "--to-port", "9000", "--verdict", "DROPPED")
        assert bad and bad[0]["traffic_direction"] == "INGRESS"


def test_to_entities_cluster(lab: Lab) -> None:
    policy = """\
        apiVersion: cilium.io/v2
        kind: CiliumNetworkPolicy
        metadata: {name: debug-in-cluster, namespace: tools}
        spec:
          endpointSelector: {matchLabels: {app: debug}}
          egress:
            - toEntities: [cluster]
        """
    since = now()
    with policies(lab, "cluster", policy):
        assert http(lab, "tools/debug", f"http://{ip(lab, 'shop/web')}:8080/") == "200"
        assert http(lab, "tools/debug", f"http://{WORLD_IN}/") == "000"
        assert flows(
            lab, since, "--from-pod", "tools/debug", "--to-pod", "shop/web", "--verdict", "FORWARDED"
        )
        assert flows(lab, since, "--from-pod", "tools/debug", "--to-ip", WORLD_IN, "--verdict", "DROPPED")


def test_deny_wins_over_allow(lab: Lab) -> None:
    policy = """\
        apiVersion: cilium.io/v2
        kind: CiliumNetworkPolicy
        metadata: {name: web-no-tools, namespace: shop}
        spec:
          endpointSelector: {matchLabels: {app: web}}
          ingress:
            - fromEntities: [all]
          ingressDeny:
            - fromEndpoints:
                - matchLabels: {k8s:io.kubernetes.pod.namespace: tools}
              toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
        """
    web = ip(lab, "shop/web")
    since = now()
    with policies(lab, "deny", policy):
        assert http(lab, "shop/client", f"http://{web}:8080/") == "200"
        assert http(lab, "tools/debug", f"http://{web}:8080/") == "000"
        assert tcp(lab, "tools/debug", web, 9000)  # the deny names 8080 only
        denied = flows(lab, since, "--from-pod", "tools/debug", "--verdict", "DROPPED")
        assert denied and denied[0]["drop_reason_desc"] == "POLICY_DENY"
        assert flows(
            lab, since, "--from-pod", "shop/client", "--to-pod", "shop/web", "--verdict", "FORWARDED"
        )


def test_port_range(lab: Lab) -> None:
    policy = """\
        apiVersion: cilium.io/v2
        kind: CiliumNetworkPolicy
        metadata: {name: web-range, namespace: shop}
        spec:
          endpointSelector: {matchLabels: {app: web}}
          ingress:
            - fromEndpoints: [{matchLabels: {app: client}}]
              toPorts: [{ports: [{port: "8080", endPort: 9100, protocol: TCP}]}]
        """
    web = ip(lab, "shop/web")
    since = now()
    with policies(lab, "range", policy):
        assert tcp(lab, "shop/client", web, 9000)
        assert http(lab, "shop/client", f"http://{web}:8080/") == "200"
        assert not tcp(lab, "shop/client", web, 9500)
        assert not tcp(lab, "tools/debug", web, 9000)
        assert flows(lab, since, "--to-pod", "shop/web", "--to-port", "9000", "--verdict", "FORWARDED")
        assert flows(lab, since, "--to-pod", "shop/web", "--to-port", "9500", "--verdict", "DROPPED")


def test_named_ports_ingress_and_egress(lab: Lab) -> None:
    policy = """\
        apiVersion: cilium.io/v2
        kind: CiliumNetworkPolicy
        metadata: {name: named, namespace: shop}
        specs:
          - endpointSelector: {matchLabels: {app: db}}
            ingress:
              - fromEndpoints: [{matchLabels: {app: client}}]
                toPorts: [{ports: [{port: pg, protocol: TCP}]}]
          - endpointSelector: {matchLabels: {app: client}}
            egress:
              - toEndpoints: [{matchLabels: {app: web}}, {matchLabels: {app: db}}]
                toPorts: [{ports: [{port: http}, {port: pg}]}]
        """
    web, db = ip(lab, "shop/web"), ip(lab, "shop/db")
    since = now()
    with policies(lab, "named", policy):
        assert tcp(lab, "shop/client", db, 5432)
        assert not tcp(lab, "tools/debug", db, 5432)
        assert http(lab, "shop/client", f"http://{web}:8080/") == "200"
        assert not tcp(lab, "shop/client", web, 9000)  # not a named port of web
        assert flows(lab, since, "--from-pod", "tools/debug", "--to-port", "5432", "--verdict", "DROPPED")
        assert flows(lab, since, "--from-pod", "shop/client", "--to-port", "9000", "--verdict", "DROPPED")


def test_match_expressions_and_namespace_qualified_keys(lab: Lab) -> None:
    policy = """\
        apiVersion: cilium.io/v2
        kind: CiliumNetworkPolicy
        metadata: {name: web-expr, namespace: shop}
        spec:
          endpointSelector:
            matchExpressions: [{key: tier, operator: In, values: [front]}]
          ingress:
            - fromEndpoints:
                - matchExpressions:
                    - {key: k8s:io.kubernetes.pod.namespace, operator: Exists}
                    - {key: app, operator: NotIn, values: [client]}
                    - {key: debug-disabled, operator: DoesNotExist}
        """
    web = ip(lab, "shop/web")
    since = now()
    with policies(lab, "expr", policy):
        assert http(lab, "tools/debug", f"http://{web}:8080/") == "200"  # other namespace, named
        assert http(lab, "shop/client", f"http://{web}:8080/") == "000"
        assert flows(lab, since, "--from-pod", "shop/client", "--to-pod", "shop/web", "--verdict", "DROPPED")


def test_ccnp_selects_across_namespaces(lab: Lab) -> None:
    policy = """\
        apiVersion: cilium.io/v2
        kind: CiliumClusterwideNetworkPolicy
        metadata: {name: from-tools-only}
        spec:
          endpointSelector:
            matchExpressions: [{key: app, operator: In, values: [web, db]}]
          ingress:
            - fromEndpoints:
                - matchLabels: {k8s:io.cilium.k8s.namespace.labels.team: tools}
        """
    since = now()
    with policies(lab, "ccnp", policy):
        assert http(lab, "tools/debug", f"http://{ip(lab, 'shop/web')}:8080/") == "200"
        assert tcp(lab, "tools/debug", ip(lab, "shop/db"), 5432)
        assert not tcp(lab, "shop/client", ip(lab, "shop/db"), 5432)
        bad = flows(lab, since, "--from-pod", "shop/client", "--to-pod", "shop/db", "--verdict", "DROPPED")
        assert bad and bad[0]["traffic_direction"] == "INGRESS"


def test_networkpolicy_and_cnp_on_the_same_pod(lab: Lab) -> None:
    policy = """\
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: db-from-tools, namespace: shop}
        spec:
          podSelector: {matchLabels: {app: db}}
          policyTypes: [Ingress]
          ingress:
            - from:
                - namespaceSelector: {matchLabels: {team: tools}}
              ports: [{port: 5432}]
        ---
        apiVersion: cilium.io/v2
        kind: CiliumNetworkPolicy
        metadata: {name: db-from-client, namespace: shop}
        spec:
          endpointSelector: {matchLabels: {app: db}}
          ingress:
            - fromEndpoints: [{matchLabels: {app: client}}]
        """
    db = ip(lab, "shop/db")
    since = now()
    with policies(lab, "np-and-cnp", policy):
        assert tcp(lab, "tools/debug", db, 5432)  # NetworkPolicy
        assert tcp(lab, "shop/client", db, 5432)  # CiliumNetworkPolicy: the union
        assert not tcp(lab, "shop/web", db, 5432)  # neither
        assert flows(lab, since, "--from-pod", "shop/web", "--to-pod", "shop/db", "--verdict", "DROPPED")
        assert flows(lab, since, "--from-pod", "tools/debug", "--to-pod", "shop/db", "--verdict", "FORWARDED")


def test_networkpolicy_ipblock_except_and_default_deny(lab: Lab) -> None:
    policy = """\
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: client-egress, namespace: shop}
        spec:
          podSelector: {matchLabels: {app: client}}
          policyTypes: [Egress]
          egress:
            - to:
                - ipBlock: {cidr: 192.0.2.0/24, except: [192.0.2.128/25]}
              ports: [{protocol: TCP, port: 80}]
        ---
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: default-deny-ingress, namespace: shop}
        spec:
          podSelector: {}
          policyTypes: [Ingress]
        """
    since = now()
    with policies(lab, "np", policy):
        assert http(lab, "shop/client", f"http://{WORLD_IN}/") == "200"
        assert http(lab, "shop/client", f"http://{WORLD_HOLE}/") == "000"
        assert http(lab, "tools/debug", f"http://{ip(lab, 'shop/web')}:8080/") == "000"  # shop isolated
        assert http(lab, "tools/debug", f"http://{WORLD_HOLE}/") == "200"  # tools is selected by nothing
        assert flows(lab, since, "--to-ip", WORLD_HOLE, "--from-pod", "shop/client", "--verdict", "DROPPED")
        assert flows(lab, since, "--from-pod", "tools/debug", "--to-pod", "shop/web", "--verdict", "DROPPED")


def test_bad_file_is_rejected_whole_and_the_lab_keeps_its_policies(lab: Lab) -> None:
    good = """\
        apiVersion: cilium.io/v2
        kind: CiliumNetworkPolicy
        metadata: {name: web-from-client, namespace: shop}
        spec:
          endpointSelector: {matchLabels: {app: web}}
          ingress:
            - fromEndpoints: [{matchLabels: {app: client}}]
        """
    bad = textwrap.dedent(good).replace("web-from-client", "web-from-debug").replace(
        "app: client", "app: debug"
    ) + textwrap.dedent("""\
        ---
        apiVersion: cilium.io/v2
        kind: CiliumNetworkPolicy
        metadata: {name: broken, namespace: shop}
        spec:
          endpointSelector: {}
          egress:
            - toCIDR: [10.0.0.0/33]
        """)
    web = ip(lab, "shop/web")
    with policies(lab, "good", good):
        path = lab.files / "bad.yaml"  # type: ignore[attr-defined]
        path.write_text(bad)
        before = lab.state()["policies"]
        out = lab.run("policy", "apply", str(path))
        assert out.returncode != 0
        assert (
            'document 2 (shop/broken): spec.egress[0].toCIDR[0]: "10.0.0.0/33" is not a valid CIDR'
            in out.stderr
        )
        assert len(out.stderr.strip().splitlines()) == 1
        assert lab.state()["policies"] == before
        assert http(lab, "shop/client", f"http://{web}:8080/") == "200"
        assert http(lab, "tools/debug", f"http://{web}:8080/") == "000"  # the good half was not applied


def test_protocols_udp_allowed_tcp_denied_on_the_same_port(lab: Lab) -> None:
    policy = """\
        apiVersion: cilium.io/v2
        kind: CiliumNetworkPolicy
        metadata: {name: client-dns-udp, namespace: shop}
        spec:
          endpointSelector: {matchLabels: {app: client}}
          egress:
            - toEndpoints:
                - matchLabels: {k8s:io.kubernetes.pod.namespace: kube-system, k8s-app: kube-dns}
              toPorts: [{ports: [{port: "53", protocol: UDP}]}]
        """
    name = "web.shop.svc.cluster.local"
    since = now()
    with policies(lab, "udp", policy):
        udp = lab.exec("shop/client", "dig", "+short", "+time=2", "+tries=1", name)
        assert udp.stdout.strip() == ip(lab, "shop/web")
        tcp_query = lab.exec("shop/client", "dig", "+short", "+tcp", "+time=2", "+tries=1", name)
        assert ip(lab, "shop/web") not in tcp_query.stdout
        assert flows(
            lab,
            since,
            "--from-pod",
            "shop/client",
            "--protocol",
            "udp",
            "--to-port",
            "53",
            "--verdict",
            "FORWARDED",
        )
        assert flows(
            lab,
            since,
            "--from-pod",
            "shop/client",
            "--protocol",
            "tcp",
            "--to-port",
            "53",
            "--verdict",
            "DROPPED",
        )


def test_to_entities_host_reaches_the_node(lab: Lab) -> None:
    import subprocess

    policy = """\
        apiVersion: cilium.io/v2
        kind: CiliumNetworkPolicy
        metadata: {name: client-to-host, namespace: shop}
        spec:
          endpointSelector: {matchLabels: {app: client}}
          egress:
            - toEntities: [host]
        """
    gateway = lab.state()["gateway"]
    node_ns = lab.state()["node_netns"]
    listener = subprocess.Popen(
        ["ip", "netns", "exec", node_ns, "python3", "-c", _LISTENER, gateway, "7000"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert listener.stdout is not None and listener.stdout.readline().strip() == "ready"
        since = now()
        with policies(lab, "host", policy):
            assert tcp(lab, "shop/client", gateway, 7000)  # the node: identity host (1)
            assert not tcp(lab, "shop/client", ip(lab, "shop/db"), 5432)
            ok = flows(lab, since, "--to-ip", gateway, "--verdict", "FORWARDED", "--type", "policy-verdict")
            assert ok and ok[0]["destination"]["identity"] == 1
            assert flows(
                lab, since, "--from-pod", "shop/client", "--to-pod", "shop/db", "--verdict", "DROPPED"
            )
    finally:
        listener.kill()
        listener.wait()


_LISTENER = (
    "import socket, sys\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(8); print('ready', flush=True)\n"
    "while True:\n"
    "    s.accept()[0].close()\n"
)
