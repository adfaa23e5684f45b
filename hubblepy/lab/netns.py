"""Network-namespace plumbing of the lab with pyroute2: a node namespace, pods, veths, routes.

Topology (nothing is added to the machine's own network namespace; the ``hp-`` prefix can be changed
with ``$HUBBLEPY_LAB_NETNS_PREFIX``, which the tests do so they never touch a running lab):

* one *node* namespace ``hp-<node>`` with IP forwarding on (IPv6 is off in every lab namespace); it holds the host side of every pod's veth
  (``hpv<endpoint id>``), each with the gateway address (first address of the pod CIDR, /32) and a
  /32 route to its pod. The tc programs sit on these host-side veths;
* one namespace per pod, ``hp-<namespace>.<pod>``, with ``eth0`` (pod IP /32), a link route to the
  gateway and a default route through it, and ``lo`` up.

* optionally one *world* namespace ``hp-world`` (hosts outside the cluster: TEST-NET addresses such as
  192.0.2.10, never routed beyond the lab), wired like a pod (veth ``hpworld``, /32 routes on the
  node side, default route via the gateway) but without tc programs: pod traffic to and from it is
  judged at the pod's veth, and the ipcache maps its addresses to ``world`` (or to CIDR identities).

So every packet between pods crosses the node namespace, where the datapath sees it on both veths.
Processes are started inside a pod with ``ip netns exec`` (which also bind-mounts
``/etc/netns/<name>/resolv.conf``, the lab's cluster DNS settings).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from pyroute2 import IPRoute, netns
from pyroute2.netlink.exceptions import NetlinkError

NETNS_PREFIX = os.environ.get("HUBBLEPY_LAB_NETNS_PREFIX", "hp-")
HOST_IF_PREFIX = "hpv"
WORLD_IF = "hpworld"
NETNS_RUN = Path("/run/netns")
NETNS_ETC = Path("/etc/netns")
_CLONE_NEWNET = 0x40000000
T = TypeVar("T")


def node_netns_name(node: str) -> str:
    return f"{NETNS_PREFIX}{node}"


def pod_netns_name(namespace: str, pod: str) -> str:
    return f"{NETNS_PREFIX}{namespace}.{pod}"


def host_ifname(ep_id: int) -> str:
    return f"{HOST_IF_PREFIX}{ep_id}"


def run_in_netns(name: str, fn: Callable[[], T]) -> T:
    """Runs ``fn`` in a short-lived thread that entered network namespace ``name``."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(NETNS_RUN / name, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if libc.setns(fd, _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns {name}: {os.strerror(err)}")
            finally:
                os.close(fd)
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller
            box["error"] = exc

    t = threading.Thread(target=target, name=f"netns-{name}")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def _sysctl(name: str, path: str, value: str) -> None:
    def write() -> None:
        Path("/proc/sys", path).write_text(value)

    run_in_netns(name, write)


def _lo_up(ipr: IPRoute) -> None:
    ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")


def list_lab_netns() -> list[str]:
    return sorted(n for n in netns.listnetns() if n.startswith(NETNS_PREFIX))


def _ipv4_only(name: str) -> None:
    """The lab is IPv4: no IPv6 link-local chatter (MLD, router solicitations) on its veths."""
    for conf in ("all", "default"):
        _sysctl(name, f"net/ipv6/conf/{conf}/disable_ipv6", "1")


def create_node(name: str) -> None:
    """The node namespace: lo up, forwarding on, IPv6 off."""
    netns.create(name)
    _ipv4_only(name)
    with IPRoute(netns=name) as ipr:
        _lo_up(ipr)
    _sysctl(name, "net/ipv4/ip_forward", "1")


def create_pod(node_ns: str, pod_ns: str, host_if: str, ip: str, gateway: str) -> int:
    """Creates the pod namespace and its veth; returns the host-side ifindex (in the node namespace)."""
    netns.create(pod_ns)
    _ipv4_only(pod_ns)
    with IPRoute(netns=node_ns) as ipr:
        ipr.link("add", ifname=host_if, kind="veth", peer={"ifname": "eth0", "net_ns_fd": pod_ns})
        index = ipr.link_lookup(ifname=host_if)[0]
        ipr.addr("add", index=index, address=gateway, prefixlen=32)
        ipr.link("set", index=index, state="up")
        ipr.route("add", dst=f"{ip}/32", oif=index, scope="link")
    with IPRoute(netns=pod_ns) as ipr:
        _lo_up(ipr)
        eth0 = ipr.link_lookup(ifname="eth0")[0]
        ipr.addr("add", index=eth0, address=ip, prefixlen=32)
        ipr.link("set", index=eth0, state="up")
        ipr.route("add", dst=f"{gateway}/32", oif=eth0, scope="link")
        ipr.route("add", dst="0.0.0.0/0", gateway=gateway, oif=eth0)
    return int(index)


def world_netns_name() -> str:
    return f"{NETNS_PREFIX}world"


def create_world(node_ns: str, world_ns: str, addresses: list[str], gateway: str) -> int:
    """The world namespace with every address on its ``eth0``; returns the node-side ifindex."""
    index = create_pod(node_ns, world_ns, WORLD_IF, addresses[0], gateway)
    with IPRoute(netns=node_ns) as ipr:
        for ip in addresses[1:]:
            ipr.route("add", dst=f"{ip}/32", oif=index, scope="link")
    with IPRoute(netns=world_ns) as ipr:
        eth0 = ipr.link_lookup(ifname="eth0")[0]
        for ip in addresses[1:]:
            ipr.addr("add", index=eth0, address=ip, prefixlen=32)
    return index


def write_resolv_conf(pod_ns: str, nameserver: str, namespace: str, domain: str = "cluster.local") -> None:
    """``/etc/netns/<pod_ns>/resolv.conf`` as kubelet writes it for a pod (ClusterFirst)."""
    folder = NETNS_ETC / pod_ns
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "resolv.conf").write_text(
        f"nameserver {nameserver}\nsearch {namespace}.svc.{domain} svc.{domain} {domain}\noptions ndots:5\n"
    )


SSL_DIR = Path("/etc/ssl")
CA_BUNDLE = Path("certs/ca-certificates.crt")  # Debian's bundle (curl's and OpenSSL's default)


def write_ca_bundle(ns: str, ca_pem: bytes) -> None:
    """``/etc/netns/<ns>/ssl``: the system's CA bundle plus ``ca_pem``, and ``openssl.cnf``.

    ``ip netns exec`` bind-mounts it over ``/etc/ssl``, so programs run in the namespace (curl,
    Python's ssl, openssl: they read ``certs/ca-certificates.crt``) trust the lab CA besides the
    system's CAs; the machine's own files are not touched.
    """
    target = NETNS_ETC / ns / "ssl"
    if target.exists():
        shutil.rmtree(target)
    (target / CA_BUNDLE).parent.mkdir(parents=True)
    if (SSL_DIR / "openssl.cnf").is_file():
        shutil.copyfile(SSL_DIR / "openssl.cnf", target / "openssl.cnf")
    system = SSL_DIR / CA_BUNDLE
    existing = system.read_bytes() if system.is_file() else b""
    if existing and not existing.endswith(b"\n"):
        existing += b"\n"
    (target / CA_BUNDLE).write_bytes(existing + ca_pem)


def netns_inode(name: str) -> int | None:
    try:
        return os.stat(NETNS_RUN / name).st_ino
    except OSError:
        return None


def pids_in_netns(names: Iterable[str]) -> list[int]:
    """Processes whose network namespace is one of ``names`` (found through /proc/*/ns/net)."""
    inodes = {i for i in (netns_inode(n) for n in names) if i is not None}
    if not inodes:
        return []
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry.name}/ns/net").st_ino in inodes:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def terminate(pids: Iterable[int], timeout: float = 3.0) -> None:
    """SIGTERM, wait up to ``timeout``, then SIGKILL whatever is left."""
    pids = [p for p in pids if p > 1 and p != os.getpid()]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    alive = pids
    while alive and time.monotonic() < deadline:
        for pid in alive:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
        alive = [p for p in alive if _alive(p)]
        if alive:
            time.sleep(0.05)
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie counts as gone
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def delete_pod(node_ns: str, pod_ns: str, host_if: str) -> None:
    """Removes a pod's processes, veth and namespace; missing pieces are fine."""
    terminate(pids_in_netns([pod_ns]))
    with contextlib.suppress(OSError, NetlinkError), IPRoute(netns=node_ns) as ipr:
        for index in ipr.link_lookup(ifname=host_if):
            ipr.link("del", index=index)
    remove_netns(pod_ns)


def remove_netns(name: str) -> None:
    try:
        netns.remove(name)
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.EINVAL):
            raise
    shutil.rmtree(NETNS_ETC / name, ignore_errors=True)


def sweep() -> list[str]:
    """Removes every lab namespace (``hp-*``), the processes inside and their /etc/netns folders."""
    names = list_lab_netns()
    terminate(pids_in_netns(names))
    for name in names:
        remove_netns(name)
    if NETNS_ETC.is_dir():
        for folder in NETNS_ETC.glob(f"{NETNS_PREFIX}*"):
            shutil.rmtree(folder, ignore_errors=True)
    return names
