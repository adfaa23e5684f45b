"""The lab node process: builds a scenario's pods and runs the node agent with the eBPF datapath.

``python -m hubblepy.lab.node --scenario FILE`` (started in the background by ``hubble lab up``).
:class:`LabNode` coordinates typed parts:

* :mod:`.pods`: pods, servers and the world as dataclasses, and the pod address pool;
* :mod:`.netns`: the node namespace, one namespace + veth per pod, the world namespace;
* :mod:`.clusterdns`: the cluster DNS zone and the pods' resolv.conf;
* :mod:`.worlddns` and :mod:`.tls`: the world's named hosts (an upstream resolver that kube-dns
  forwards to) and the lab CA that pods trust and the world's HTTPS servers use;
* :mod:`.processes`: the child processes (pods' servers, the relay; with L7, the node's proxies,
  started with ``children.start(name, argv, netns_name=node_ns)`` and watched by the same loop);
  :mod:`.launch` starts the servers of pods and of the world through it;
* :mod:`.policysync`: applied policies compiled into the datapath's maps;
* :mod:`hubblepy.fqdn`: the FQDN cache the DNS proxy's answers fill (through the notify socket,
  applied before the proxy releases each answer), toFQDNs, the cache's GC against conntrack and
  the names on flows;
* :mod:`.agent`: the observer (ring + gRPC Observer/Peer/health, as ``hubble agent``), its flow
  sources (the datapath's perf ring; with L7, :class:`~hubblepy.lab.source.AccessLogSource` over the
  proxies' access log) and ``hubble-relay``;
* :mod:`hubblepy.observer.agentevents`: the agent events Cilium's agent sends (``AGENT_STARTED``,
  policy imports and deletions, endpoints created and deleted, ipcache entries upserted and deleted,
  toFQDNs identities included), held until the observer serves and then published into it;
* :mod:`.control`: the control socket with its dispatch table (policy apply/delete, audit, pod
  recreate, status, shutdown); every change is written to ``state.json``.

SIGTERM or a ``shutdown`` request tears everything down (detach, namespaces, processes, state).
With ``--no-datapath`` only the namespaces and servers are made (no policy, no flows).
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hubblepy.fqdn.cache import FQDNCache
from hubblepy.fqdn.conntrack import live_connections
from hubblepy.fqdn.names import NameManager
from hubblepy.fqdn.notify import Notification, NotifyServer
from hubblepy.fqdn.table import lookups
from hubblepy.lab import clusterdns, netns, worlddns
from hubblepy.lab.agent import NodeAgent
from hubblepy.lab.control import ControlServer, Handler, field
from hubblepy.lab.errors import LabError
from hubblepy.lab.launch import ServerLauncher
from hubblepy.lab.pods import AddressPool, Pod, Server, World
from hubblepy.lab.policysync import PolicySync
from hubblepy.lab.processes import Supervisor
from hubblepy.lab.scenario import PodSpec, Scenario, load_scenario
from hubblepy.lab.source import AccessLogSource, DatapathFlowSource
from hubblepy.lab.state import control_path, lab_dir, pid_path, read_pid, save_state, state_path
from hubblepy.lab.tls import CERT_DIR, LabCA, lab_ca_files
from hubblepy.lab.worlddns import NameEntry
from hubblepy.metrics import MetricsConfigError
from hubblepy.metrics.lab import LabMetrics, add_lab_arguments
from hubblepy.monitor.options import DEFAULT_NUM_PAGES, NUM_PAGES_FLAG, check_num_pages
from hubblepy.observer.agentevents import agent_started, endpoint_update
from hubblepy.parser import EndpointInfo, Parser, StaticResolver
from hubblepy.parser.seven import SevenParser
from hubblepy.policy import IdentityAllocator, PolicyError, pod_labels
from hubblepy.policy.compiler import CompiledPolicy
from hubblepy.policy.identity import IDENTITY_HOST
from hubblepy.policy.model import PolicyRef
from hubblepy.proxy.dns_node import DNS_PROXY_NAME, FQDN_NOTIFY_SOCKET, NodeDNSProxy
from hubblepy.proxy.node import PROXY_NAME, NodeProxy

if TYPE_CHECKING:
    from hubblepy.datapath import Datapath


FQDN_GC_INTERVAL = 1.0  # seconds between FQDN cache GC rounds
FQDN_LATENCY_KEEP = 4096


def _log(message: str) -> None:
    sys.stderr.write(f"lab node: {message}\n")
    sys.stderr.flush()


def best_effort(what: str, fn: Callable[[], object]) -> None:
    """Runs one teardown step; a failure is logged (with its reason) and the teardown goes on."""
    try:
        fn()
    except Exception as exc:
        _log(f"{what}: {type(exc).__name__}: {exc}")


class LabNode:
    """One lab: its pods, world, datapath, policy, agent and control socket."""

    def __init__(
        self,
        scenario: Scenario,
        folder: Path,
        use_datapath: bool = True,
        listen_address: str = "127.0.0.1:4244",
        relay_address: str = "127.0.0.1:4245",
        monitor_aggregation: str = "medium",
        fqdn_min_ttl: int = 0,
        monitor_num_pages: int = DEFAULT_NUM_PAGES,
    ) -> None:
        self.scenario = scenario
        self.monitor_num_pages = check_num_pages(monitor_num_pages)
        self.folder = folder
        self.use_datapath = use_datapath
        self.monitor_aggregation = monitor_aggregation
        self.node_ns = netns.node_netns_name(scenario.node)
        self.addresses = AddressPool(scenario.pod_cidr)
        self.gateway = self.addresses.gateway
        self.identities = IdentityAllocator()
        self.resolver = StaticResolver()
        self.resolver.set_ipcache(self.gateway, IDENTITY_HOST)
        self.datapath: Datapath | None = None
        self.policy = PolicySync(self.identities, self.resolver)
        self.events = self.policy.events  # agent events, published once the observer serves
        self.ipcache_events = self.policy.ipcache_events
        self.pods: dict[str, Pod] = {}
        self.world: World | None = None
        self.children = Supervisor(folder)
        self.servers = ServerLauncher(self.children, folder)
        self.agent = NodeAgent(scenario.node, listen_address, relay_address, self.children)
        self.agent_started = False
        self.source: DatapathFlowSource | None = None
        # the node's L7 HTTP proxy (with the datapath only): redirected connections go through it
        self.proxy: NodeProxy | None = None
        self.dns_proxy: NodeDNSProxy | None = None  # and its DNS proxy (rules.dns), same access log
        self.access_log: AccessLogSource | None = None
        self.policy.on_sync = self._sync_proxy
        # toFQDNs: the DNS proxy's allowed answers (notify socket) -> cache -> ipcache + policy map
        self.fqdn_cache = FQDNCache(min_ttl=fqdn_min_ttl)
        self.policy.names = NameManager(self.fqdn_cache, self.policy.allocate_fqdn_ip)
        self.fqdn_notify_path = folder / FQDN_NOTIFY_SOCKET
        self.fqdn_notify: NotifyServer | None = None
        self.fqdn_latency_ns: list[int] = []  # notify handling times (last FQDN_LATENCY_KEEP)
        self._fqdn_gc_at = 0.0
        self.metrics: LabMetrics | None = None  # Prometheus metrics (set by main())
        self.ca: LabCA | None = None
        self.lock = threading.RLock()
        self.stop = threading.Event()
        self.control = ControlServer(folder, self.handlers(), self.lock, self.stop.set)

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.events.publish(agent_started(time.time_ns()))
        self.policy.apply_policies(self.scenario.policies)
        self.ipcache_events.upsert(f"{self.gateway}/32", IDENTITY_HOST)
        if self.use_datapath:
            self.datapath = self._load_datapath()
            self.policy.datapath = self.datapath
        self.ca = self.servers.ca = LabCA.create(self.folder)
        netns.create_node(self.node_ns)
        if self.datapath is not None:
            from hubblepy.datapath import proxy_routing

            proxy_routing.install(self.node_ns)
            self.proxy = NodeProxy(self.folder, self.node_ns)
            self.dns_proxy = NodeDNSProxy(
                self.folder,
                self.node_ns,
                access_log_path=self.proxy.access_log_path,
                notify_path=self.folder / FQDN_NOTIFY_SOCKET,
            )
        self._make_world()
        for spec in self.scenario.pods:
            self._add_pod(spec, sync=False)
        clusterdns.write(self.folder, self.pods.values())
        for pod in self.pods.values():
            self.servers.start(pod)
        self.policy.sync(self.pods.values())
        if self.datapath is not None:
            for pod in self.pods.values():
                self.datapath.attach(pod.host_if, netns=self.node_ns)
            self.fqdn_notify = NotifyServer(self.fqdn_notify_path, self._on_dns_answer)
            self.fqdn_notify.start()
            self._start_agent(self.datapath)
        self.control.start()
        self.save()

    def _load_datapath(self) -> Datapath:
        from hubblepy.datapath import Datapath

        datapath = Datapath()
        datapath.set_monitor_aggregation(self.monitor_aggregation)
        datapath.set_ipcache(f"{self.gateway}/32", IDENTITY_HOST)
        return datapath

    def _make_world(self) -> None:
        """The hosts outside the cluster (scenario ``world``): their namespace and servers."""
        spec = self.scenario.world
        if spec is None:
            return
        world_ns = netns.world_netns_name()
        netns.create_world(self.node_ns, world_ns, list(spec.addresses), self.gateway)
        if self.datapath is not None:
            # the world's veth has no endpoint: its program hands the world's replies to the L7
            # proxy's upstream connections, and redirects world -> pod connections with L7 rules
            self.datapath.attach_outside(netns.WORLD_IF, netns=self.node_ns)
        self.world = World.from_spec(spec, world_ns)
        if spec.hosts:
            worlddns.write_hosts_file(
                self.servers.hosts_file,
                (NameEntry(h.name, h.addresses, h.ttl, h.answers) for h in spec.hosts),
            )
            self.servers.upstream = self.world.resolver
        self.servers.start(self.world)

    def _start_agent(self, datapath: Datapath) -> None:
        metrics = self.metrics
        self.agent.start(metrics.relay_args() if metrics is not None else ())
        self.agent_started = True
        if self.agent.observer is not None:
            self.events.attach(self.agent.observer)
        parser = Parser(self.resolver, self.scenario.node)
        if metrics is not None and self.agent.observer is not None:
            metrics.start_node(self.agent.observer, parser)
        self.source = DatapathFlowSource(datapath, parser, pages=self.monitor_num_pages)
        self.agent.add_source(self.source)
        if self.proxy is not None:
            seven = SevenParser(Parser(self.resolver, self.scenario.node))
            self.access_log = AccessLogSource(
                self.proxy.access_log_path, seven.decode, decode_batch=seven.decode_batch, seven=seven
            )
            self.agent.add_source(self.access_log)
            self._start_proxy()
            self._start_dns_proxy()
        if metrics is not None:
            metrics.start_prometheus(self.folder)

    # -- the L7 proxy ---------------------------------------------------------------------------
    def _start_proxy(self) -> None:
        """Starts the node's HTTP proxy in the node namespace and waits until it accepts."""
        proxy = self.proxy
        assert proxy is not None
        self._sync_proxy()
        child = self.children.start(PROXY_NAME, proxy.argv(), netns_name=self.node_ns)
        proxy.started(child.pid)
        if not proxy.wait_ready(netns.run_in_netns):
            raise LabError(f"the L7 proxy did not start (see {self.folder / (PROXY_NAME + '.log')})")

    def _start_dns_proxy(self) -> None:
        """Starts the node's DNS proxy in the node namespace and waits until it accepts."""
        proxy = self.dns_proxy
        assert proxy is not None
        self._sync_proxy()
        child = self.children.start(DNS_PROXY_NAME, proxy.argv(), netns_name=self.node_ns)
        proxy.started(child.pid)
        if not proxy.wait_ready(netns.run_in_netns):
            raise LabError(f"the DNS proxy did not start (see {self.folder / (DNS_PROXY_NAME + '.log')})")

    def _sync_proxy(
        self, compiled: CompiledPolicy | None = None, uids: dict[PolicyRef, str] | None = None
    ) -> None:
        """Writes the proxies' state (rules, endpoints, ipcache, identities) and makes them reload."""
        proxy = self.proxy
        compiled = compiled or self.policy.compiled
        if proxy is None or compiled is None:
            return
        if uids is None:
            from hubblepy.policy.attribution import policy_uid

            uids = {p.ref: policy_uid(p.ref, p.document) for p in self.policy.repo.policies()}
        ipcache = [(f"{self.gateway}/32", IDENTITY_HOST)]
        ipcache += [(f"{p.ip}/32", p.identity) for p in self.pods.values()]
        ipcache += list(self.identities.cidr_identities().items())
        proxy.update(
            l7=compiled.l7,
            cookies=self.policy.cookies,
            policy_revision=self.policy.repo.revision,
            uids=uids,
            endpoints=[(p.ep_id, p.ip, p.identity) for p in self.pods.values()],
            ipcache=ipcache,
            identities=dict(self.identities.items()),
            node={"name": self.scenario.node, "ipv4": self.gateway},
        )
        if self.dns_proxy is not None:
            self.dns_proxy.update(
                dns=compiled.dns,
                cookies=self.policy.cookies,
                policy_revision=self.policy.repo.revision,
                uids=uids,
                endpoints=[(p.ep_id, p.ip, p.identity) for p in self.pods.values()],
                ipcache=ipcache,
                identities=dict(self.identities.items()),
                node={"name": self.scenario.node, "ipv4": self.gateway},
            )

    def _watch_proxy(self, exited: list[tuple[str, int]]) -> None:
        """Restarts a proxy after it died (fail closed meanwhile: the datapath drops its traffic)."""
        for child_name, proxy, start, what in (
            (PROXY_NAME, self.proxy, self._start_proxy, "L7 proxy"),
            (DNS_PROXY_NAME, self.dns_proxy, self._start_dns_proxy, "DNS proxy"),
        ):
            if proxy is None or self.stop.is_set():
                continue
            for name, status in exited:
                if name == child_name:
                    proxy.exited(status)
            if proxy.due_for_restart():
                try:
                    with self.lock:
                        start()
                    _log(f"{what} restarted (pid {proxy.pid}, restart {proxy.restarts})")
                except (LabError, OSError, RuntimeError) as exc:
                    _log(f"{what} restart failed: {exc}")
                    if proxy.pid:
                        self.children.stop(child_name)
                        proxy.exited(-1)

    # -- toFQDNs ----------------------------------------------------------------------------------
    def _on_dns_answer(self, note: Notification) -> None:
        """One allowed answer from the DNS proxy: cache, ipcache and policy map, before the ack."""
        start = time.perf_counter_ns()
        with self.lock:
            ep_id = self.fqdn_cache.endpoint_of(note.endpoint_ip)
            if ep_id is None:
                raise ValueError(f"no endpoint has IP {note.endpoint_ip}")
            update = self.fqdn_cache.update(ep_id, note.name, note.ips, note.ttl)
            self.policy.learn(update)
            for ip in dict.fromkeys(note.ips):
                self.resolver.set_dns_names(ep_id, ip, self.fqdn_cache.names_for(ep_id, ip))
        latency = self.fqdn_latency_ns
        latency.append(time.perf_counter_ns() - start)
        if len(latency) > FQDN_LATENCY_KEEP:
            del latency[: len(latency) - FQDN_LATENCY_KEEP]

    def _fqdn_gc(self) -> None:
        """Expired cache entries go (unless a tracked connection still uses the IP), then their allows."""
        next_expiry = self.fqdn_cache.next_expiry()
        if next_expiry is None or next_expiry > time.time():
            return
        datapath = self.datapath
        live: set[tuple[int, str]] | None = None

        def in_use(ep_id: int, ip: str) -> bool:
            nonlocal live
            if datapath is None:
                return False
            if live is None:
                live = live_connections(datapath)
            return (ep_id, ip) in live

        with self.lock:
            before = {(e.ep_id, e.ip) for e in self.fqdn_cache.entries()}
            gone = self.fqdn_cache.gc(in_use)
            self.policy.expire(gone)
            after = {(e.ep_id, e.ip) for e in self.fqdn_cache.entries()}
            for ep_id, ip in before - after:
                self.resolver.set_dns_names(ep_id, ip, self.fqdn_cache.names_for(ep_id, ip))

    def fqdn_state(self) -> dict[str, Any]:
        latency = sorted(self.fqdn_latency_ns)

        def pct(q: float) -> int:
            return latency[min(len(latency) - 1, int(q * len(latency)))] if latency else 0

        return {
            "min_ttl": self.fqdn_cache.min_ttl,
            "notify": str(self.fqdn_notify_path) if self.fqdn_notify is not None else "",
            "notify_stats": self.fqdn_notify.stats() if self.fqdn_notify is not None else {},
            "updates": dict(self.policy.fqdn_stats),
            "apply_p50_us": pct(0.5) / 1000,
            "apply_p99_us": pct(0.99) / 1000,
            "cached": len(self.fqdn_cache),
            "selected_ips": len(self.policy.names.ip_identity) if self.policy.names is not None else 0,
        }

    def _op_fqdn_cache(self, req: dict[str, Any]) -> dict[str, Any]:
        pods = {p.ep_id: p.key for p in self.pods.values()}
        endpoint = req.get("endpoint")
        if isinstance(endpoint, str) and endpoint:
            found = self.pods.get(endpoint)
            if found is None:
                raise LabError(f"no pod {endpoint} in the lab")
            endpoint = found.ep_id
        entries = self.fqdn_cache.entries(
            endpoint if isinstance(endpoint, int) else None, str(req.get("name") or "")
        )
        return {"lookups": lookups(entries, pods), "fqdn": self.fqdn_state()}

    def run_forever(self) -> bool:
        """Runs until stopped (True) or until the lab directory is removed under us (False)."""
        control = control_path(self.folder)
        inode = os.stat(control).st_ino
        while not self.stop.wait(0.2):  # a dead L7 proxy is noticed (and restarted) within 0.2 s
            exited = self.children.poll()
            for name, status in exited:
                _log(f"{name} exited with status {status}")
            self._watch_proxy(exited)
            if time.monotonic() >= self._fqdn_gc_at:
                self._fqdn_gc_at = time.monotonic() + FQDN_GC_INTERVAL
                try:
                    self._fqdn_gc()
                except Exception as exc:  # keep serving; the next round tries again
                    _log(f"FQDN cache GC failed: {type(exc).__name__}: {exc}")
            try:
                still_ours = os.stat(control).st_ino == inode
            except OSError:
                still_ours = False
            if not still_ours:
                return False
        return True

    def abandon(self) -> None:
        """The lab was removed under us (``lab down`` swept it): stop the relay and touch nothing else.

        The namespaces (and so our veths and tc filters) are gone and their names may already belong
        to a new lab, so there is nothing to detach or delete; the caller exits at once.
        """
        _log("the lab directory was removed; exiting without cleanup")
        self.agent.stop_relay()
        if self.metrics is not None:
            best_effort("stopping metrics", self.metrics.stop)

    def shutdown(self) -> None:
        self.stop.set()
        self.control.close()
        if self.fqdn_notify is not None:
            best_effort("closing the FQDN notify socket", self.fqdn_notify.close)
        if self.metrics is not None:
            best_effort("stopping metrics", self.metrics.stop)
        if self.agent_started:
            best_effort("stopping the agent", self.agent.stop)
        datapath = self.datapath
        if datapath is not None:
            best_effort("closing the datapath", datapath.close)
            from hubblepy.datapath import proxy_routing

            best_effort("removing the proxy routing", lambda: proxy_routing.uninstall(self.node_ns))
        for pod in list(self.pods.values()):
            best_effort(f"deleting pod {pod.key}", functools.partial(self._delete_netns, pod))
        self.children.stop_all()
        netns.sweep()
        for path in (
            state_path(self.folder),
            control_path(self.folder),
            pid_path(self.folder),
            clusterdns.zone_path(self.folder),
            self.servers.hosts_file,
            *(lab_ca_files(self.folder)),
        ):
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                _log(f"cannot remove {path}: {exc.strerror}")
        certs = self.folder / CERT_DIR
        if certs.is_dir():
            try:
                certs.rmdir()
            except OSError as exc:
                _log(f"cannot remove {certs}: {exc.strerror}")

    # -- pods -----------------------------------------------------------------------------------
    def _delete_netns(self, pod: Pod) -> None:
        netns.delete_pod(self.node_ns, pod.netns, pod.host_if)

    def _add_pod(self, spec: PodSpec, sync: bool = True) -> Pod:
        ip, ep_id = self.addresses.take()
        labels = tuple(
            pod_labels(
                spec.namespace,
                spec.labels,
                spec.service_account,
                namespace_labels=self.scenario.namespaces.get(spec.namespace),
            )
        )
        identity = self.identities.allocate(labels)
        pod = Pod(spec, ip, ep_id, identity, labels, [Server.from_spec(s) for s in spec.servers])
        pod.ifindex = netns.create_pod(self.node_ns, pod.netns, pod.host_if, ip, self.gateway)
        if self.ca is not None:
            netns.write_ca_bundle(pod.netns, self.ca.pem())
        self.pods[spec.key] = pod
        self.fqdn_cache.set_endpoint(ep_id, [ip])
        if self.datapath is not None:
            self.datapath.set_ipcache(f"{ip}/32", identity)
            self.datapath.upsert_endpoint(ep_id, pod.ifindex, identity, 0, addresses=[ip])
        self.events.publish(endpoint_update(ep_id, labels, spec.name, spec.namespace))
        # a local endpoint's entry has no host IP (no tunnel endpoint), as in Cilium's ipcache
        self.ipcache_events.upsert(f"{ip}/32", identity, namespace=spec.namespace, pod_name=spec.name)
        self.resolver.set_identity(identity, labels)
        self.resolver.set_interface(pod.ifindex, pod.host_if)
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
            clusterdns.write(self.folder, self.pods.values())
            self.servers.start(pod)
            self.policy.sync(self.pods.values())
            if self.datapath is not None:
                self.datapath.attach(pod.host_if, netns=self.node_ns)
        return pod

    def _remove_pod(self, key: str) -> Pod:
        pod = self.pods.pop(key)
        self.servers.forget(pod)
        datapath = self.datapath
        if datapath is not None:
            # the veth may already be gone with its namespace: nothing left to detach then
            best_effort(f"detaching {pod.host_if}", lambda: datapath.detach(pod.host_if, netns=self.node_ns))
            datapath.delete_endpoint(pod.ep_id)
            datapath.delete_ipcache(f"{pod.ip}/32")
        self.resolver.remove_endpoint(pod.ep_id)
        self.policy.names_gone(self.fqdn_cache.remove_endpoint(pod.ep_id))
        self.ipcache_events.delete(f"{pod.ip}/32", namespace=pod.namespace, pod_name=pod.name)
        self.events.publish(endpoint_update(pod.ep_id, pod.labels, pod.name, pod.namespace, deleted=True))
        netns.delete_pod(self.node_ns, pod.netns, pod.host_if)
        return pod

    def recreate_pod(self, key: str) -> dict[str, Any]:
        """Deletes a pod and creates it again (new endpoint id, new IP, same labels)."""
        spec = next((p for p in self.scenario.pods if p.key == key), None)
        if spec is None or key not in self.pods:
            raise LabError(f"no pod {key} in the lab")
        old = self._remove_pod(key)
        new = self._add_pod(spec)
        self.addresses.release(old.ip)
        self.save()
        return {
            "pod": key,
            "old_ip": old.ip,
            "ip": new.ip,
            "old_endpoint": old.ep_id,
            "endpoint": new.ep_id,
            "identity": new.identity,
            "old_identity": old.identity,
        }

    # -- control requests (the dispatch table) --------------------------------------------------
    def handlers(self) -> dict[str, Handler]:
        return {
            "status": self._op_status,
            # the policy documents in force (evidence bundles hash them)
            "policies": lambda req: {
                "revision": self.policy.repo.revision,
                "policies": self.policy.repo.to_json(),
            },
            "policy-apply": lambda req: self._op_policy(req, delete=False),
            "policy-delete": lambda req: self._op_policy(req, delete=True),
            "audit": self._op_audit,
            "recreate": lambda req: self.recreate_pod(field(req, "pod")),
            "fqdn-cache": self._op_fqdn_cache,
            "shutdown": lambda req: {"shutdown": True},
        }

    def _op_status(self, req: dict[str, Any]) -> dict[str, Any]:
        self.save()
        return {"state": self.state()}

    def _op_policy(self, req: dict[str, Any], delete: bool) -> dict[str, Any]:
        text, filename = field(req, "text"), field(req, "filename")
        reply = self.policy.apply_text(text, filename, self.pods.values(), delete=delete)
        self.save()
        return reply

    def _op_audit(self, req: dict[str, Any]) -> dict[str, Any]:
        reply = self.policy.set_audit(
            bool(field(req, "enabled")),
            self.pods,
            self.scenario.namespaces,
            pod=req.get("pod", ""),
            namespace=req.get("namespace", ""),
            policy=req.get("policy", ""),
        )
        self.save()
        return reply

    # -- state ----------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        relay_pid = self.agent.relay_pid
        return {
            "scenario": self.scenario.path,
            "name": self.scenario.name,
            "node": self.scenario.node,
            "node_netns": self.node_ns,
            "pod_cidr": str(self.scenario.pod_cidr),
            "gateway": self.gateway,
            "pid": os.getpid(),
            "datapath": self.datapath is not None,
            "agent": self.agent.listen_address if self.agent_started else "",
            "relay": self.agent.relay_address if relay_pid else "",
            "relay_pid": relay_pid,
            "pods": [p.to_state() for p in self.pods.values()],
            "world": self.world.to_state() if self.world is not None else None,
            "ca": str(self.ca.cert_path) if self.ca is not None else "",
            **self.policy.state(),
            "proxy": self._proxy_state(),
            "dns_proxy": self.dns_proxy.status() if self.dns_proxy is not None else None,
            "fqdn": self.fqdn_state(),
            "flows_published": self.source.published if self.source is not None else 0,
            "lost_samples": self.source.lost if self.source is not None else 0,
            "monitor_num_pages": self.monitor_num_pages,
            "agent_events_published": self.events.published,
            **(self.metrics.state() if self.metrics is not None else {}),
        }

    def _proxy_state(self) -> dict[str, Any] | None:
        if self.proxy is None:
            return None
        state = self.proxy.status()
        if self.access_log is not None:
            state["published"] = self.access_log.published
            state["malformed"] = self.access_log.malformed
        return state

    def save(self) -> None:
        with self.lock:
            save_state(self.state(), self.folder)


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
    p.add_argument(
        "--tofqdns-min-ttl",
        type=int,
        default=0,
        help="lowest TTL (s) an FQDN cache entry keeps (Cilium's default is 3600; the lab's 0 shows expiry)",
    )
    p.add_argument(
        NUM_PAGES_FLAG,
        default=str(DEFAULT_NUM_PAGES),
        help=f"perf ring pages per CPU, a power of two (default {DEFAULT_NUM_PAGES}; docs/datapath.md)",
    )
    add_lab_arguments(p)  # --metrics-server, --metrics, --relay-metrics-address, --prometheus-address
    args = p.parse_args(argv)
    try:
        num_pages = check_num_pages(args.monitor_num_pages)
    except ValueError as exc:
        sys.stderr.write(f"lab: {exc}\n")
        return 2
    folder = lab_dir()
    folder.mkdir(parents=True, exist_ok=True)
    other = read_pid(pid_path(folder))
    if other is not None and other != os.getpid():
        sys.stderr.write(f"lab: another lab node (pid {other}) runs in {folder}\n")
        return 1
    pid_path(folder).write_text(f"{os.getpid()}\n")
    node: LabNode | None = None

    def on_signal(signum: int, frame: object) -> None:
        if node is None:
            sys.exit(1)
        node.stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        scenario = load_scenario(args.scenario or None)
        node = LabNode(
            scenario,
            folder,
            not args.no_datapath,
            args.listen_address,
            args.relay_address,
            args.monitor_aggregation,
            fqdn_min_ttl=args.tofqdns_min_ttl,
            monitor_num_pages=num_pages,
        )
        node.metrics = LabMetrics.from_args(args)
        node.start()
        tune_gc_for_flows()
    except (LabError, PolicyError, MetricsConfigError) as exc:
        _teardown(node)  # first: the last line of the log is what `hubble lab up` shows
        sys.stderr.write(f"lab: {exc}\n")
        return 1
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        _teardown(node)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        sys.stderr.write(f"lab: cannot bring the lab up: {type(exc).__name__}: {first}\n")
        return 1
    sys.stderr.write(f"lab: up ({len(node.pods)} pods)\n")
    sys.stderr.flush()
    try:
        finished = node.run_forever()
    except BaseException:
        node.shutdown()
        raise
    if not finished:
        node.abandon()
        sys.stderr.flush()
        # the gRPC server's and the datapath's threads and finalizers must not run: they would touch
        # namespaces and interfaces that may belong to a new lab by now
        os._exit(0)
    node.shutdown()
    return 0


def _teardown(node: LabNode | None) -> None:
    if node is not None:
        best_effort("tearing the half-built lab down", node.shutdown)
    else:
        netns.sweep()
    pid_path(lab_dir()).unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["LabError", "LabNode"]
