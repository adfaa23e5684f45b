"""The lab node process: builds a scenario's pods and runs the node agent with the eBPF datapath.

``python -m hubblepy.lab.node --scenario FILE`` (started in the background by ``hubble lab up``):

1. creates the node namespace and one namespace + veth per pod (:mod:`hubblepy.lab.netns`), the
   pods' resolv.conf and the cluster DNS zone, and starts each pod's servers inside its namespace;
2. loads the datapath (:class:`hubblepy.datapath.Datapath`), fills the endpoints and ipcache maps from
   the lab state, compiles the scenario's policies (:mod:`hubblepy.policy`) into the policy map, and
   attaches to every host-side veth;
3. serves the node's observer (ring + gRPC Observer/Peer/health, as ``hubble agent``) on
   ``--listen-address`` with the datapath as its flow source and a parser resolver built from the lab
   state, and starts ``hubble-relay`` on ``--relay-address`` pointed at it;
4. answers control requests on a unix socket (:mod:`hubblepy.lab.control`): policy apply/delete,
   audit on/off, pod recreate, status, shutdown; every change is written to ``state.json``.

SIGTERM or a ``shutdown`` request tears everything down (detach, namespaces, processes, state).
With ``--no-datapath`` only the namespaces and servers are made (no policy, no flows).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from hubblepy.lab import netns
from hubblepy.lab.scenario import PodSpec, Scenario, ScenarioError, load_scenario
from hubblepy.lab.state import control_path, lab_dir, pid_path, read_pid, save_state, state_path
from hubblepy.metrics import MetricsConfigError
from hubblepy.metrics.lab import LabMetrics, add_lab_arguments
from hubblepy.policy import (
    ACTION_DENY,
    EGRESS,
    INGRESS,
    CookieJar,
    Endpoint,
    IdentityAllocator,
    PolicyError,
    PolicyRepository,
    compile_policies,
    parse_policies,
    pod_labels,
)
from hubblepy.policy.attribution import ACTION_AUDIT_DENY, PolicySnapshot, policy_uid
from hubblepy.policy.audit import AuditSettings, apply_audit, matching_policies, parse_policy_name
from hubblepy.policy.cidr import policy_prefixes
from hubblepy.policy.identity import IDENTITY_HOST

REPO_ROOT = Path(__file__).resolve().parents[2]
FIRST_ENDPOINT_ID = 100
FIRST_POD_HOST = 10  # pod IPs start at the 10th address of the pod CIDR
CLUSTER_DOMAIN = "cluster.local"


class LabError(Exception):
    """A problem reported to the user as one line."""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


class LabNode:
    def __init__(
        self,
        scenario: Scenario,
        folder: Path,
        use_datapath: bool = True,
        listen_address: str = "127.0.0.1:4244",
        relay_address: str = "127.0.0.1:4245",
        monitor_aggregation: str = "medium",
    ) -> None:
        self.scenario = scenario
        self.folder = folder
        self.use_datapath = use_datapath
        self.listen_address = listen_address
        self.relay_address = relay_address
        self.monitor_aggregation = monitor_aggregation
        self.node_ns = netns.node_netns_name(scenario.node)
        hosts = scenario.pod_cidr.hosts()
        self.gateway = str(next(hosts))
        self._free_ips = [str(ip) for ip in list(scenario.pod_cidr.hosts())[FIRST_POD_HOST - 1 :]]
        self._next_ep = FIRST_ENDPOINT_ID
        self.identities = IdentityAllocator()
        self.cookies = CookieJar()
        self.repo = PolicyRepository()
        self.audit = AuditSettings()  # by names: survives policy updates and pod recreation
        self.pods: dict[str, dict[str, Any]] = {}
        self.lock = threading.RLock()
        self.stop = threading.Event()
        self.datapath: Any = None
        self.resolver: Any = None
        self.server: Any = None
        self.source: Any = None
        self.relay: subprocess.Popen | None = None
        self._threads: list[threading.Thread] = []
        self._control: socket.socket | None = None
        self.policy_stats = {"added": 0, "changed": 0, "removed": 0}
        self.world: dict[str, Any] | None = None
        self.metrics: Any = None  # hubblepy.metrics.lab.LabMetrics, set by main()

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.repo.apply(self.scenario.policies)
        if self.use_datapath:
            from hubblepy.datapath import Datapath

            self.datapath = Datapath()
            self.datapath.set_monitor_aggregation(self.monitor_aggregation)
            self.datapath.set_ipcache(f"{self.gateway}/32", IDENTITY_HOST)
        self._make_resolver()
        netns.create_node(self.node_ns)
        self._make_world()
        for spec in self.scenario.pods:
            self._add_pod(spec, sync=False)
        self._write_zone()
        for pod in self.pods.values():
            self._start_servers(pod)
        self.sync_policy()
        if self.datapath is not None:
            for pod in self.pods.values():
                self.datapath.attach(pod["host_if"], netns=self.node_ns)
            self._start_observer()
        self._start_control()
        self.save()

    def _make_world(self) -> None:
        """The hosts outside the cluster (scenario ``world``): their namespace and servers."""
        spec = self.scenario.world
        if spec is None:
            return
        world_ns = netns.world_netns_name()
        netns.create_world(self.node_ns, world_ns, list(spec.addresses), self.gateway)
        self.world = {
            "namespace": "outside",
            "name": "world",
            "netns": world_ns,
            "addresses": list(spec.addresses),
            "servers": [
                {"kind": s.kind, "port": s.port, "routes": list(s.routes), "pid": 0} for s in spec.servers
            ],
        }
        self._start_servers(self.world)

    def _make_resolver(self) -> None:
        try:
            from hubblepy.parser import StaticResolver
        except ImportError:  # parser not available: flows will lack names
            return
        self.resolver = StaticResolver()
        self.resolver.set_ipcache(self.gateway, IDENTITY_HOST)

    def _start_observer(self) -> None:
        from hubblepy.lab.source import DatapathFlowSource
        from hubblepy.observer.core import Observer
        from hubblepy.observer.server import ObserverServer, ServerConfig
        from hubblepy.parser import Parser

        observer = Observer(self.scenario.node)
        self.server = ObserverServer(
            observer, ServerConfig(listen_address=self.listen_address, max_workers=16)
        )
        self.server.start()
        parser = Parser(self.resolver, self.scenario.node)
        if self.metrics is not None:  # metrics (issue 11)
            self.metrics.start_node(observer, parser)
        self.source = DatapathFlowSource(self.datapath, parser)
        t = threading.Thread(
            target=self.source.run, args=(observer, self.stop), name="datapath-source", daemon=True
        )
        t.start()
        self._threads.append(t)
        log = open(self.folder / "relay.log", "ab")  # noqa: SIM115 - owned by the child
        self.relay = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "relay",
                "--listen-address",
                self.relay_address,
                "--peers",
                f"{self.scenario.node}={self.listen_address}",
                "--node-name",
                self.scenario.node,
                *(self.metrics.relay_args() if self.metrics is not None else []),
            ],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env=_env(),
            cwd=str(REPO_ROOT),
        )
        log.close()
        if self.metrics is not None:
            self.metrics.start_prometheus(self.folder)

    def run_forever(self) -> None:
        control = control_path(self.folder)
        inode = os.stat(control).st_ino
        while not self.stop.wait(0.5):
            if self.relay is not None and self.relay.poll() is not None:
                sys.stderr.write(f"lab node: relay exited with status {self.relay.returncode}\n")
                self.relay = None
            try:
                still_ours = os.stat(control).st_ino == inode
            except OSError:
                still_ours = False
            if not still_ours:
                self._abandon()

    def _abandon(self) -> None:
        """The lab was removed under us (``lab down`` swept it): leave without touching anything.

        The namespaces (and so our veths and tc filters) are gone and their names may already belong
        to a new lab, so there is nothing to detach or delete: stop the relay and exit.
        """
        sys.stderr.write("lab node: the lab directory was removed; exiting without cleanup\n")
        if self.relay is not None:
            netns.terminate([self.relay.pid])
        if self.metrics is not None:
            self.metrics.stop()
        os._exit(0)

    def shutdown(self) -> None:
        self.stop.set()
        if self.metrics is not None:
            with contextlib.suppress(Exception):
                self.metrics.stop()
        if self._control is not None:
            with contextlib.suppress(OSError):
                self._control.close()
        if self.relay is not None:
            netns.terminate([self.relay.pid])
            with contextlib.suppress(Exception):
                self.relay.wait(1)
        if self.server is not None:
            with contextlib.suppress(Exception):
                self.server.stop(grace=0.3)
        for t in self._threads:
            t.join(timeout=2)
        if self.datapath is not None:
            with contextlib.suppress(Exception):
                self.datapath.close()
        for pod in list(self.pods.values()):
            with contextlib.suppress(Exception):
                netns.delete_pod(self.node_ns, pod["netns"], pod["host_if"])
        netns.sweep()
        for path in (
            state_path(self.folder),
            control_path(self.folder),
            pid_path(self.folder),
            self.folder / "dns-zone.json",
        ):
            with contextlib.suppress(OSError):
                path.unlink()

    # -- pods -----------------------------------------------------------------------------------
    def _add_pod(self, spec: PodSpec, sync: bool = True) -> dict[str, Any]:
        if not self._free_ips:
            raise LabError(f"no free address left in {self.scenario.pod_cidr}")
        ip = self._free_ips.pop(0)
        ep_id = self._next_ep
        self._next_ep += 1
        labels = pod_labels(
            spec.namespace,
            spec.labels,
            spec.service_account,
            namespace_labels=self.scenario.namespaces.get(spec.namespace),
        )
        identity = self.identities.allocate(labels)
        pod = {
            "namespace": spec.namespace,
            "name": spec.name,
            "netns": netns.pod_netns_name(spec.namespace, spec.name),
            "host_if": netns.host_ifname(ep_id),
            "ifindex": 0,
            "ip": ip,
            "ep_id": ep_id,
            "identity": identity,
            "labels": list(labels),
            "workload": list(spec.workload) if spec.workload else None,
            "servers": [
                {"kind": s.kind, "port": s.port, "routes": list(s.routes), "pid": 0} for s in spec.servers
            ],
            "ports": [list(p) for p in spec.ports],
            "audit": False,
            "ingress_enforced": False,
            "egress_enforced": False,
        }
        pod["ifindex"] = netns.create_pod(self.node_ns, pod["netns"], pod["host_if"], ip, self.gateway)
        self.pods[spec.key] = pod
        if self.datapath is not None:
            self.datapath.set_ipcache(f"{ip}/32", identity)
            self.datapath.upsert_endpoint(ep_id, pod["ifindex"], identity, 0)
        if self.resolver is not None:
            from hubblepy.parser import EndpointInfo

            self.resolver.set_identity(identity, labels)
            self.resolver.set_interface(pod["ifindex"], pod["host_if"])
            self.resolver.add_endpoint(
                EndpointInfo(
                    id=ep_id,
                    identity=identity,
                    namespace=spec.namespace,
                    pod_name=spec.name,
                    labels=labels,
                    workloads=(spec.workload,) if spec.workload else (),
                    cluster_name="default",
                    ips=(ip,),
                )
            )
        if sync:
            self._write_zone()
            self._start_servers(pod)
            self.sync_policy()
            if self.datapath is not None:
                self.datapath.attach(pod["host_if"], netns=self.node_ns)
        return pod

    def _remove_pod(self, key: str) -> dict[str, Any]:
        pod = self.pods.pop(key)
        if self.datapath is not None:
            with contextlib.suppress(Exception):
                self.datapath.detach(pod["host_if"], netns=self.node_ns)
            self.datapath.delete_endpoint(pod["ep_id"])
            self.datapath.delete_ipcache(f"{pod['ip']}/32")
        if self.resolver is not None:
            self.resolver.remove_endpoint(pod["ep_id"])
        netns.delete_pod(self.node_ns, pod["netns"], pod["host_if"])
        return pod

    def recreate_pod(self, key: str) -> dict[str, Any]:
        """Deletes a pod and creates it again (new endpoint id, new IP, same labels)."""
        spec = next((p for p in self.scenario.pods if p.key == key), None)
        if spec is None or key not in self.pods:
            raise LabError(f"no pod {key} in the lab")
        old = self._remove_pod(key)
        new = self._add_pod(spec)
        self._free_ips.append(old["ip"])
        self.save()
        return {
            "pod": key,
            "old_ip": old["ip"],
            "ip": new["ip"],
            "old_endpoint": old["ep_id"],
            "endpoint": new["ep_id"],
            "identity": new["identity"],
            "old_identity": old["identity"],
        }

    def _dns_pod(self) -> dict[str, Any] | None:
        return next((p for p in self.pods.values() if any(s["kind"] == "dns" for s in p["servers"])), None)

    def _write_zone(self) -> None:
        zone = {f"{p['name']}.{p['namespace']}.svc.{CLUSTER_DOMAIN}": p["ip"] for p in self.pods.values()}
        tmp = self.folder / "dns-zone.json.tmp"
        tmp.write_text(json.dumps(zone, indent=1))
        os.replace(tmp, self.folder / "dns-zone.json")
        dns = self._dns_pod()
        for pod in self.pods.values():
            if dns is not None:
                netns.write_resolv_conf(pod["netns"], dns["ip"], pod["namespace"], CLUSTER_DOMAIN)

    def _start_servers(self, pod: dict[str, Any]) -> None:
        for server in pod["servers"]:
            args = [server["kind"], "--port", str(server["port"])]
            for route in server["routes"]:
                args += ["--route", route]
            if server["kind"] == "dns":
                args += ["--zone-file", str(self.folder / "dns-zone.json")]
            log = open(self.folder / f"server-{pod['namespace']}.{pod['name']}.log", "ab")  # noqa: SIM115
            proc = subprocess.Popen(
                ["ip", "netns", "exec", pod["netns"], sys.executable, "-m", "hubblepy.lab.servers", *args],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                env=_env(),
                cwd=str(REPO_ROOT),
                start_new_session=True,
            )
            log.close()
            server["pid"] = proc.pid
        for server in pod["servers"]:
            self._wait_listening(pod, server)

    def _wait_listening(self, pod: dict[str, Any], server: dict[str, Any], timeout: float = 10.0) -> None:
        """Waits until the server's TCP port accepts inside the pod (DNS listens on TCP too)."""
        deadline = time.monotonic() + timeout

        def probe() -> bool:
            with socket.socket() as s:
                s.settimeout(0.2)
                return s.connect_ex(("127.0.0.1", server["port"])) == 0

        while time.monotonic() < deadline:
            if netns.run_in_netns(pod["netns"], probe):
                return
            time.sleep(0.05)
        raise LabError(
            f"server {server['kind']} on port {server['port']} of {pod['namespace']}/{pod['name']} did not start"
        )

    # -- policy ---------------------------------------------------------------------------------
    def sync_policy(self) -> dict[str, int]:
        """Recompiles every policy for every pod and writes only the changed map entries."""
        self._sync_cidr_identities()
        endpoints = [
            Endpoint(
                p["ep_id"], p["identity"], tuple(p["labels"]), tuple(tuple(x) for x in p.get("ports", ()))
            )
            for p in self.pods.values()
        ]
        named: dict[int, list[tuple[str, int, int]]] = {}
        for p in self.pods.values():
            named.setdefault(p["identity"], []).extend(tuple(x) for x in p.get("ports", ()))
        policies = self.repo.policies()
        compiled = compile_policies(
            policies,
            endpoints,
            dict(self.identities.items()),
            self.cookies,
            named_ports=named,
        )
        audited = apply_audit(
            compiled,
            self.cookies,
            self.audit,
            {p["ep_id"]: (p["namespace"], p["name"]) for p in self.pods.values()},
            self.repo.revision,
            {p.ref: policy_uid(p.ref, p.document) for p in policies},
        )
        stats = {"added": 0, "changed": 0, "removed": 0}
        grouped: dict[tuple[int, int], list] = {}
        for key, value in audited.entries.items():
            grouped.setdefault((key.ep_id, key.direction), []).append((key, value))
        for pod in self.pods.values():
            info = compiled.endpoints[pod["ep_id"]]
            flags = audited.flags[pod["ep_id"]]
            pod["ingress_enforced"], pod["egress_enforced"] = info.ingress_enforced, info.egress_enforced
            pod["policies"] = [str(ref) for ref in info.selected_by]
            pod["audit"] = bool(flags.audit_scope)
            pod["audit_scope"] = flags.audit_scope
            pod["default_deny_audited"] = [
                d
                for d, on in (
                    ("ingress", flags.ingress_default_audited),
                    ("egress", flags.egress_default_audited),
                )
                if on
            ]
            if self.datapath is None:
                continue
            from hubblepy.datapath import PolicyEntry

            for direction in (INGRESS, EGRESS):
                entries = [
                    PolicyEntry(
                        identity=k.identity,
                        dport=k.dport,
                        proto=k.proto,
                        deny=v.action in (ACTION_DENY, ACTION_AUDIT_DENY),
                        audit=v.action == ACTION_AUDIT_DENY,
                        cookie=v.cookie,
                        end_port=k.end_port,
                    )
                    for k, v in grouped.get((pod["ep_id"], direction), [])
                ]
                diff = self.datapath.set_policy_entries(pod["ep_id"], direction, entries)
                stats["added"] += diff.added
                stats["changed"] += diff.changed
                stats["removed"] += diff.removed
            self.datapath.set_enforcement(
                pod["ep_id"], ingress=info.ingress_enforced, egress=info.egress_enforced
            )
            self.datapath.set_audit(pod["ep_id"], bool(flags.audit_scope))
            self.datapath.set_default_audit(
                pod["ep_id"], flags.ingress_default_audited, flags.egress_default_audited
            )
        if self.resolver is not None:
            self.resolver.set_policy_explainer(_explainer(audited.snapshot))
        self.policy_stats = stats
        return stats

    def _sync_cidr_identities(self) -> None:
        """CIDR identities for every prefix the policies name, written into the ipcache (LPM trie)."""
        wanted = policy_prefixes(self.repo.policies())
        current = self.identities.cidr_identities()
        for prefix in sorted(wanted - current.keys()):
            identity = self.identities.allocate_cidr(prefix)
            if self.datapath is not None:
                self.datapath.set_ipcache(prefix, identity)
            if self.resolver is not None:
                self.resolver.set_identity(identity, self.identities.labels_of(identity) or ())
        for prefix in sorted(current.keys() - wanted):
            if self.datapath is not None:
                self.datapath.delete_ipcache(prefix)
            self.identities.release(current[prefix])

    def apply_policy_text(self, text: str, filename: str, delete: bool = False) -> dict[str, Any]:
        policies = parse_policies(text, filename)  # raises PolicyError: nothing applied
        if delete:
            refs = self.repo.delete([p.ref for p in policies])
            missing = [str(p.ref) for p in policies if p.ref not in refs]
            names = [str(r) for r in refs]
        else:
            names = [str(r) for r in self.repo.apply(policies)]
            missing = []
        stats = self.sync_policy()
        self.save()
        return {
            "policies": names,
            "missing": missing,
            "entries": stats,
            "warnings": [w for p in policies for w in p.warnings] if not delete else [],
        }

    def set_audit(self, on: bool, pod: str = "", namespace: str = "", policy: str = "") -> dict[str, Any]:
        """Audit mode for a pod (``ns/name``), a namespace, or one policy (``ns/name`` or a CCNP name).

        The setting is kept by name and applied at every policy sync, so it holds across policy
        updates and pod recreation; disabling what was not enabled is not an error.
        """
        if self.datapath is None:
            raise LabError("the lab runs without the datapath (--no-datapath): no audit mode")
        if sum(bool(x) for x in (pod, namespace, policy)) != 1:
            raise LabError("audit needs exactly one of a pod, a namespace or a policy")
        if pod:
            if pod not in self.pods:
                raise LabError(f"no pod {pod} in the lab")
            (self.audit.pods.add if on else self.audit.pods.discard)(pod)
            scope = f"pod {pod}"
        elif namespace:
            known = {p["namespace"] for p in self.pods.values()} | set(self.scenario.namespaces)
            if on and namespace not in known:
                raise LabError(f"no namespace {namespace} in the lab")
            (self.audit.namespaces.add if on else self.audit.namespaces.discard)(namespace)
            scope = f"namespace {namespace}"
        else:
            try:
                key = parse_policy_name(policy)
            except ValueError as exc:
                raise LabError(str(exc)) from None
            found = matching_policies([p.ref for p in self.repo.policies()], *key)
            if on and not found:
                raise LabError(f"no policy {policy} is applied (see: hubble lab status)")
            (self.audit.policies.add if on else self.audit.policies.discard)(key)
            scope = "policy " + (", ".join(f"{r} ({r.kind})" for r in found) or policy)
        self.sync_policy()
        self.save()
        return {"scope": scope, "audit": on, "settings": self.audit.to_json()}

    # -- state ----------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario.path,
            "name": self.scenario.name,
            "node": self.scenario.node,
            "node_netns": self.node_ns,
            "pod_cidr": str(self.scenario.pod_cidr),
            "gateway": self.gateway,
            "pid": os.getpid(),
            "datapath": self.datapath is not None,
            "agent": self.listen_address if self.server is not None else "",
            "relay": self.relay_address if self.relay is not None else "",
            "relay_pid": self.relay.pid if self.relay is not None else 0,
            "pods": list(self.pods.values()),
            "world": self.world,
            "cidr_identities": self.identities.cidr_identities(),
            "policies": [
                {"ref": str(p.ref), "kind": p.ref.kind, "source": p.source} for p in self.repo.policies()
            ],
            "policy_revision": self.repo.revision,
            "audit": self.audit.to_json(),
            "flows_published": self.source.published if self.source is not None else 0,
            "lost_samples": self.source.lost if self.source is not None else 0,
            **(self.metrics.state() if self.metrics is not None else {}),
        }

    def save(self) -> None:
        with self.lock:
            save_state(self.state(), self.folder)

    # -- control socket -------------------------------------------------------------------------
    def _start_control(self) -> None:
        path = control_path(self.folder)
        with contextlib.suppress(OSError):
            path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        os.chmod(path, 0o600)
        sock.listen(8)
        self._control = sock
        t = threading.Thread(target=self._serve_control, name="lab-control", daemon=True)
        t.start()

    def _serve_control(self) -> None:
        assert self._control is not None
        while not self.stop.is_set():
            try:
                conn, _ = self._control.accept()
            except OSError:
                return
            with conn:
                try:
                    data = b""
                    while not data.endswith(b"\n"):
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                    reply = self.handle(json.loads(data or b"{}"))
                except Exception as exc:  # one bad request must not stop the node
                    reply = {"error": f"internal error: {type(exc).__name__}: {exc}"}
                with contextlib.suppress(OSError):
                    conn.sendall(json.dumps(reply).encode() + b"\n")
            if reply.get("shutdown"):
                self.stop.set()

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        try:
            with self.lock:
                if op == "status":
                    self.save()
                    return {"ok": True, "state": self.state()}
                if op in ("policy-apply", "policy-delete"):
                    return {
                        "ok": True,
                        **self.apply_policy_text(
                            request["text"], request["filename"], delete=op == "policy-delete"
                        ),
                    }
                if op == "audit":
                    return {
                        "ok": True,
                        **self.set_audit(
                            bool(request["enabled"]),
                            pod=request.get("pod", ""),
                            namespace=request.get("namespace", ""),
                            policy=request.get("policy", ""),
                        ),
                    }
                if op == "recreate":
                    return {"ok": True, **self.recreate_pod(request["pod"])}
                if op == "shutdown":
                    return {"ok": True, "shutdown": True}
        except (LabError, PolicyError) as exc:
            return {"error": str(exc)}
        return {"error": f"unknown request {op!r}"}


def _explainer(snapshot: PolicySnapshot) -> Any:
    """The parser resolver's policy_for_verdict over one policy sync (attribution)."""
    from hubblepy.parser import PolicyMatch

    def explain(cookie: int, ep_id: int, ingress: bool, remote: int, proto: int, dport: int) -> Any:
        found = snapshot.explain(ep_id, INGRESS if ingress else EGRESS, remote, proto, dport)
        if found is None:
            return None
        return PolicyMatch(policies=found.policies, log=found.log, verdict=found.verdict)

    return explain


def tune_gc_for_flows() -> None:
    """Collect garbage less often: flows are acyclic dicts, and the default thresholds made the
    collector about a fifth of the perf -> ring pipeline's CPU (benchmarks/bench_datapath.py)."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hubblepy.lab.node")
    p.add_argument("--scenario", default="")
    p.add_argument("--no-datapath", action="store_true")
    p.add_argument("--listen-address", default="127.0.0.1:4244")
    p.add_argument("--relay-address", default="127.0.0.1:4245")
    p.add_argument("--monitor-aggregation", default="medium", choices=["medium", "none"])
    add_lab_arguments(p)  # --metrics-server, --metrics, --relay-metrics-address, --prometheus-address
    args = p.parse_args(argv)
    folder = lab_dir()
    folder.mkdir(parents=True, exist_ok=True)
    other = read_pid(pid_path(folder))
    if other is not None and other != os.getpid():
        sys.stderr.write(f"lab: another lab node (pid {other}) runs in {folder}\n")
        return 1
    pid_path(folder).write_text(f"{os.getpid()}\n")
    node: LabNode | None = None
    signal.signal(signal.SIGTERM, lambda *_: node.stop.set() if node else sys.exit(1))
    signal.signal(signal.SIGINT, lambda *_: node.stop.set() if node else sys.exit(1))
    try:
        scenario = load_scenario(args.scenario or None)
        node = LabNode(
            scenario,
            folder,
            not args.no_datapath,
            args.listen_address,
            args.relay_address,
            args.monitor_aggregation,
        )
        node.metrics = LabMetrics.from_args(args)
        node.start()
        tune_gc_for_flows()
    except (ScenarioError, PolicyError, LabError, MetricsConfigError) as exc:
        sys.stderr.write(f"lab: {exc}\n")
        _teardown(node)
        return 1
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        sys.stderr.write(f"lab: cannot bring the lab up: {type(exc).__name__}: {first}\n")
        _teardown(node)
        return 1
    sys.stderr.write(f"lab: up ({len(node.pods)} pods)\n")
    sys.stderr.flush()
    try:
        node.run_forever()
    finally:
        node.shutdown()
    return 0


def _teardown(node: LabNode | None) -> None:
    if node is not None:
        with contextlib.suppress(Exception):
            node.shutdown()
    else:
        netns.sweep()
    with contextlib.suppress(OSError):
        pid_path(lab_dir()).unlink()


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["LabError", "LabNode"]
