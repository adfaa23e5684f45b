"""The Datapath: compiles and loads bpf/endpoint.c with bcc, owns its maps, attaches to veths.

Usage::

    with Datapath() as dp:
        dp.upsert_endpoint(1, ifindex, identity=1001, flags=EP_ENFORCE_INGRESS)
        dp.attach(ifindex)
        dp.set_ipcache("10.200.0.11/32", 1001)
        dp.set_policy_entries(1, "ingress", [PolicyEntry(identity=1002, dport=8080, proto=6)])

Everything this object creates (tc qdiscs/filters, programs, maps) is removed by ``close()``;
``cleanup_stale(prefix)`` removes leftovers of a crashed process.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import ipaddress
import os
import tempfile
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from hubblepy.datapath import layout, tc
from hubblepy.datapath.errors import DatapathError, DatapathUnavailable, VerifierRejected

BPF_DIR = Path(os.environ.get("HUBBLEPY_BPF_DIR") or Path(__file__).resolve().parents[2] / "bpf")
PROGRAM_FILE = "endpoint.c"
INGRESS_PROG = "from_container"  # clsact ingress of the host veth = pod egress policy
EGRESS_PROG = "to_container"  # clsact egress of the host veth = pod ingress policy
LOCAL_REDIRECT_PROG = "local_redirect"  # tail call of from_container: a local destination's L7 redirect
OUTSIDE_PROG = "from_outside"  # clsact ingress of a node interface without endpoints: proxy replies
TAIL_LOCAL_REDIRECT = 0  # its index in tail_progs


@dataclass(frozen=True, slots=True)
class PolicyEntry:
    """One policy-map entry of an endpoint and direction. identity/dport/proto 0 mean "any".

    ``end_port`` > ``dport`` makes it a port range (toPorts endPort): it goes to the ``policy_ranges``
    LPM trie as aligned port blocks (:func:`port_blocks`), not to the exact-match ``policy`` hash.
    ``proxy_port`` != 0 (allows only) redirects the connections this entry decides to the node's
    transparent proxy (see :mod:`hubblepy.datapath.proxy_routing`).
    """

    identity: int = 0
    dport: int = 0
    proto: int = 0
    deny: bool = False
    cookie: int = 0
    audit: bool = False  # with deny: audit only (passes with verdict AUDIT when something allows)
    end_port: int = 0
    proxy_port: int = 0  # an allow with L7 rules: its connections go to the node's proxy on this port

    @property
    def key(self) -> tuple[int, int, int, int]:
        return (self.identity, self.dport, self.proto, self.end_port)

    @property
    def is_range(self) -> bool:
        return self.end_port > self.dport


def _action(e: PolicyEntry) -> int:
    """The map action of an entry: allow, deny, or audit-only deny (exact and range entries alike)."""
    if not e.deny:
        return layout.POLICY_ALLOW
    return layout.POLICY_AUDIT_DENY if e.audit else layout.POLICY_DENY


def port_blocks(first: int, last: int) -> list[tuple[int, int]]:
    """Splits the port range first..last into aligned blocks (start, prefix bits of 16), fewest first.

    1..65535 gives 16 blocks, 8000..8080 gives 3; no range needs more than 30.
    """
    out = []
    port = first
    while port <= last:
        size = port & -port if port else 1 << 16
        while port + size - 1 > last:
            size >>= 1
        out.append((port, 16 - size.bit_length() + 1))
        port += size
    return out


class PolicyDiff(NamedTuple):
    added: int
    changed: int
    removed: int


class MetricCount(NamedTuple):
    packets: int
    bytes: int


@dataclass(slots=True)
class _Endpoint:
    ifindex: int
    identity: int
    flags: int
    addresses: tuple[str, ...] = ()


def check_environment() -> None:
    """Raises DatapathUnavailable with one line if root, bcc or kernel headers are missing."""
    if os.geteuid() != 0:
        raise DatapathUnavailable("eBPF datapath needs root (CAP_BPF and CAP_NET_ADMIN): run as root")
    try:
        import bcc  # noqa: F401
    except ImportError:
        raise DatapathUnavailable(
            "bcc missing: apt-get install python3-bpfcc and use a Python that sees system site-packages"
        ) from None
    build = Path("/lib/modules") / os.uname().release / "build"
    if not (build / "include").is_dir():
        raise DatapathUnavailable(f"kernel headers missing ({build}): run scripts/setup-kernel-headers.sh")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _load_program(bpf: Any, src: Path, name: str) -> Any:
    """Loads one tc program; when the kernel refuses it, raises VerifierRejected with the whole log."""
    from bcc import BPF

    try:
        return bpf.load_func(name.encode(), BPF.SCHED_CLS)
    except Exception as exc:  # bcc raises a bare Exception and prints the log to stderr only
        reason = _first_line(exc)
    log, truncated = _verifier_log(bpf, name)
    if not log:
        raise DatapathUnavailable(f"cannot load {src.name}: {reason}")
    verdict = _verifier_verdict(log)
    header = f"# verifier log of {name} from {src}{' (log buffer full: its tail)' if truncated else ''}\n"
    try:
        fd, path = tempfile.mkstemp(prefix=f"hubblepy-verifier-{name}-", suffix=".log")
        with os.fdopen(fd, "w") as f:
            f.write(header + log)
        where = f"whole log ({log.count(chr(10))} lines): {path}"
    except OSError as exc:
        path, where = "", f"whole log on the exception (not written: {exc.strerror})"
    raise VerifierRejected(
        f"cannot load {src.name}: the verifier refused {name}: {verdict}; {where}", log, path
    ) from None


VERIFIER_LOG_SIZE = 16 << 20


def _verifier_log(bpf: Any, name: str) -> tuple[str, bool]:
    """Loads the program again with a log buffer (the kernel refuses it the same way) and returns
    the verifier's log and whether it filled the buffer (the kernel then keeps its tail)."""
    import ctypes

    from bcc import BPF
    from bcc.libbcc import lib

    func = name.encode()
    buf = ctypes.create_string_buffer(VERIFIER_LOG_SIZE)
    fd = lib.bcc_func_load(
        bpf.module,
        BPF.SCHED_CLS,
        func,
        lib.bpf_function_start(bpf.module, func),
        lib.bpf_function_size(bpf.module, func),
        lib.bpf_module_license(bpf.module),
        lib.bpf_module_kern_version(bpf.module),
        1,  # log level 1: every instruction the verifier walked up to the refusal
        buf,
        VERIFIER_LOG_SIZE,
        None,
        -1,
    )
    err = ctypes.get_errno()
    if fd >= 0:  # accepted this time (a transient failure): nothing to report
        os.close(fd)
        return "", False
    return buf.value.decode(errors="replace"), err == errno.ENOSPC


def _verifier_verdict(log: str) -> str:
    """The verifier's own reason: the last log line before its "processed N insns" summary."""
    lines = [line for line in log.splitlines() if line.strip()]
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith("processed ") and i > 0:
            return lines[i - 1].strip()
    return lines[-1].strip() if lines else "no reason given"


def lib_has_function(bpf: Any, name: str) -> bool:
    """Whether the compiled module defines the program ``name`` (a custom bpf_dir may not)."""
    from bcc.libbcc import lib

    return bool(lib.bpf_function_start(bpf.module, name.encode()))


def _local_key(table: Any, address: str) -> Any:
    ip = ipaddress.ip_address(address)
    key = table.Key()
    key.family = ip.version
    for i, b in enumerate(ip.packed):
        key.addr[i] = b
    return key


def _ipcache_key(table: Any, cidr: str) -> Any:
    try:
        net = ipaddress.ip_network(cidr, strict=False)
    except ValueError as exc:
        raise ValueError(f"invalid CIDR {cidr!r}: {exc}") from None
    key = table.Key()
    key.prefixlen = 32 + net.prefixlen
    key.family = net.version
    packed = net.network_address.packed
    for i, b in enumerate(packed):
        key.addr[i] = b
    return key


class Datapath:
    """Loaded endpoint programs plus a typed API over their maps."""

    def __init__(self, bpf_dir: Path | str | None = None, extra_cflags: tuple[str, ...] = ()) -> None:
        check_environment()
        from bcc import BPF

        self._bpf_dir = Path(bpf_dir) if bpf_dir else BPF_DIR
        src = self._bpf_dir / PROGRAM_FILE
        if not src.is_file():
            raise DatapathUnavailable(f"BPF source missing: {src}")
        cflags = [f"-I{self._bpf_dir}", "-Wno-macro-redefined", *extra_cflags]
        try:
            self._bpf = BPF(src_file=str(src).encode(), cflags=cflags)
        except Exception as exc:  # bcc raises bare Exception on compile errors (clang prints them)
            raise DatapathUnavailable(f"cannot load {src.name}: {_first_line(exc)}") from None
        try:
            self._fn_ingress = _load_program(self._bpf, src, INGRESS_PROG)
            self._fn_egress = _load_program(self._bpf, src, EGRESS_PROG)
            if lib_has_function(self._bpf, LOCAL_REDIRECT_PROG):
                fn = _load_program(self._bpf, src, LOCAL_REDIRECT_PROG)
                tail = self._bpf.get_table(b"tail_progs")
                tail[tail.Key(TAIL_LOCAL_REDIRECT)] = tail.Leaf(fn.fd)
            self._fn_outside = (
                _load_program(self._bpf, src, OUTSIDE_PROG)
                if lib_has_function(self._bpf, OUTSIDE_PROG)
                else None
            )
        except BaseException:
            self._bpf.cleanup()
            raise
        self.events = self._bpf.get_table(b"hubble_events")
        self.ipcache = self._bpf.get_table(b"ipcache")
        self.endpoints = self._bpf.get_table(b"endpoints")
        self.policy = self._bpf.get_table(b"policy")
        self.policy_ranges = self._bpf.get_table(b"policy_ranges")
        self.conntrack = self._bpf.get_table(b"conntrack")
        self.metrics = self._bpf.get_table(b"metrics")
        self.config = self._bpf.get_table(b"config")
        self.local_endpoints = self._bpf.get_table(b"local_endpoints")
        self._endpoints: dict[int, _Endpoint] = {}
        self._policy: dict[tuple[int, int], dict[tuple[int, int, int, int], PolicyEntry]] = {}
        # (ep_id, direction) -> {(identity, proto, action, start, bits): (cookie, proxy port)} in policy_ranges
        self._ranges: dict[tuple[int, int], dict[tuple[int, int, int, int, int], tuple[int, int]]] = {}
        self._attached: dict[tuple[str | None, int], bool] = {}  # -> clsact created by us
        self._closed = False
        self._aggregation = "medium"
        self._payload_len = 128
        self._lifetimes = (21600, 60, 10)  # TCP, other, TCP closing (seconds)
        self._write_config()
        ref = weakref.ref(self)

        def close_at_exit() -> None:
            dp = ref()
            if dp is not None:
                dp.close()

        self._atexit = close_at_exit
        atexit.register(self._atexit)

    # -- lifecycle --------------------------------------------------------------------------------
    def __enter__(self) -> Datapath:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Detaches from every interface and releases programs and maps. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self._atexit)
        errors: list[str] = []
        for (netns, ifindex), created in list(self._attached.items()):
            try:
                with tc.netlink(netns) as ipr:
                    tc.detach(ipr, ifindex, remove_qdisc=created)
            except Exception as exc:  # keep cleaning the others
                errors.append(f"{netns or 'host'}/{ifindex}: {exc}")
        self._attached.clear()
        self._bpf.cleanup()
        if errors:
            raise DatapathError("detach failed for " + "; ".join(errors))

    @staticmethod
    def cleanup_stale(prefix: str, netns: str | None = None) -> list[str]:
        """Removes clsact qdiscs (and so our filters) from interfaces named ``prefix*``."""
        return tc.cleanup_stale(prefix, netns)

    # -- attach -----------------------------------------------------------------------------------
    @property
    def program_fds(self) -> tuple[int, int]:
        """(from_container fd, to_container fd)."""
        return (self._fn_ingress.fd, self._fn_egress.fd)

    def attach(self, interface: str | int, netns: str | None = None) -> int:
        """Attaches both programs to a host-side veth (by name or ifindex); returns the ifindex."""
        with tc.netlink(netns) as ipr:
            ifindex = tc.resolve_ifindex(ipr, interface)
            created = tc.attach(
                ipr, ifindex, self._fn_ingress.fd, self._fn_egress.fd, (INGRESS_PROG, EGRESS_PROG)
            )
        key = (netns, ifindex)
        self._attached[key] = self._attached.get(key, False) or created
        return ifindex

    def attach_outside(self, interface: str | int, netns: str | None = None) -> int:
        """Attaches the ``from_outside`` program to the clsact ingress of a node interface that has no
        endpoint (the lab's world veth, an uplink): replies from there to the proxy's upstream
        connections reach the proxy instead of being routed to the client pod. Returns the ifindex."""
        if self._fn_outside is None:
            raise DatapathUnavailable(f"{OUTSIDE_PROG} is not in {self._bpf_dir / PROGRAM_FILE}")
        with tc.netlink(netns) as ipr:
            ifindex = tc.resolve_ifindex(ipr, interface)
            created = tc.attach(ipr, ifindex, self._fn_outside.fd, None, (OUTSIDE_PROG, ""))
        key = (netns, ifindex)
        self._attached[key] = self._attached.get(key, False) or created
        return ifindex

    def detach(self, interface: str | int, netns: str | None = None) -> None:
        with tc.netlink(netns) as ipr:
            try:
                ifindex = tc.resolve_ifindex(ipr, interface)
            except LookupError:
                return
            created = self._attached.pop((netns, ifindex), False)
            tc.detach(ipr, ifindex, remove_qdisc=created)

    @property
    def attached(self) -> list[tuple[str | None, int]]:
        return list(self._attached)

    # -- endpoints --------------------------------------------------------------------------------
    def upsert_endpoint(
        self,
        ep_id: int,
        ifindex: int,
        identity: int,
        flags: int = 0,
        addresses: Iterable[str] | None = None,
    ) -> None:
        """Creates or updates the endpoint behind host veth ``ifindex`` (ep_id 1..65535).

        ``addresses`` are the pod's IPs (None = unchanged): a connection from another local pod to
        one of them is judged against this endpoint's ingress policy at the source's hook, which is
        where an L7 redirect (an entry with a proxy port) can be done.
        """
        if not 0 < ep_id < 65536:
            raise ValueError(f"endpoint id {ep_id} out of range 1..65535")
        old = self._endpoints.get(ep_id)
        if addresses is None:
            addrs = old.addresses if old is not None else ()
        else:
            addrs = tuple(str(ipaddress.ip_address(a)) for a in addresses)
        if old is not None and old.ifindex != ifindex:
            self._delete_endpoint_key(old.ifindex)
        t = self.endpoints
        val = t.Leaf()
        val.ep_id, val.identity, val.flags = ep_id, identity, flags
        t[t.Key(ifindex)] = val
        for a in addrs:
            self.local_endpoints[_local_key(self.local_endpoints, a)] = self.local_endpoints.Leaf(ifindex)
        for a in set(old.addresses if old is not None else ()) - set(addrs):
            with contextlib.suppress(KeyError):  # already gone
                del self.local_endpoints[_local_key(self.local_endpoints, a)]
        self._endpoints[ep_id] = _Endpoint(ifindex, identity, flags, addrs)

    def _delete_endpoint_key(self, ifindex: int) -> None:
        with contextlib.suppress(KeyError):
            del self.endpoints[self.endpoints.Key(ifindex)]

    def delete_endpoint(self, ep_id: int) -> None:
        """Removes the endpoint, its policy entries and its conntrack entries."""
        ep = self._endpoints.pop(ep_id, None)
        if ep is not None:
            self._delete_endpoint_key(ep.ifindex)
            for a in ep.addresses:
                with contextlib.suppress(KeyError):  # already gone
                    del self.local_endpoints[_local_key(self.local_endpoints, a)]
        for direction in (layout.DIR_INGRESS, layout.DIR_EGRESS):
            self._write_policy(ep_id, direction, {})
        self.flush_conntrack(ep_id)

    def set_flags(self, ep_id: int, flags: int) -> None:
        ep = self._require(ep_id)
        self.upsert_endpoint(ep_id, ep.ifindex, ep.identity, flags)

    def set_enforcement(self, ep_id: int, ingress: bool | None = None, egress: bool | None = None) -> None:
        """Turns default-deny policy enforcement on or off per direction (None = unchanged)."""
        flags = self._require(ep_id).flags
        for on, bit in ((ingress, layout.EP_ENFORCE_INGRESS), (egress, layout.EP_ENFORCE_EGRESS)):
            if on is not None:
                flags = flags | bit if on else flags & ~bit
        self.set_flags(ep_id, flags)

    def set_audit(self, ep_id: int, on: bool) -> None:
        """Policy audit mode: denied packets pass and their verdict events carry the audited flag."""
        flags = self._require(ep_id).flags
        self.set_flags(ep_id, flags | layout.EP_AUDIT if on else flags & ~layout.EP_AUDIT)

    def set_default_audit(self, ep_id: int, ingress: bool, egress: bool) -> None:
        """Per-policy audit: when no entry matches, a direction's default deny passes with verdict AUDIT."""
        flags = self._require(ep_id).flags & ~(
            layout.EP_AUDIT_DEFAULT_INGRESS | layout.EP_AUDIT_DEFAULT_EGRESS
        )
        if ingress:
            flags |= layout.EP_AUDIT_DEFAULT_INGRESS
        if egress:
            flags |= layout.EP_AUDIT_DEFAULT_EGRESS
        self.set_flags(ep_id, flags)

    def endpoint(self, ep_id: int) -> tuple[int, int, int] | None:
        """(ifindex, identity, flags) of an endpoint, or None."""
        ep = self._endpoints.get(ep_id)
        return (ep.ifindex, ep.identity, ep.flags) if ep else None

    def _require(self, ep_id: int) -> _Endpoint:
        ep = self._endpoints.get(ep_id)
        if ep is None:
            raise KeyError(f"unknown endpoint {ep_id}")
        return ep

    # -- ipcache ----------------------------------------------------------------------------------
    def set_ipcache(self, cidr: str, identity: int) -> None:
        """Maps an IPv4/IPv6 prefix to a security identity (longest prefix wins)."""
        key = _ipcache_key(self.ipcache, cidr)
        val = self.ipcache.Leaf()
        val.identity = identity
        self.ipcache[key] = val

    def delete_ipcache(self, cidr: str) -> bool:
        try:
            del self.ipcache[_ipcache_key(self.ipcache, cidr)]
        except KeyError:
            return False
        return True

    # -- policy -----------------------------------------------------------------------------------
    def set_policy_entries(self, ep_id: int, direction: str | int, entries: Any) -> PolicyDiff:
        """Makes the endpoint's policy for one direction exactly ``entries`` (PolicyEntry iterable).

        Only changed keys are written: new and changed entries first, removed ones last, so an
        unchanged allow never disappears during an update. Established connections are not judged
        again and keep flowing.
        """
        dir_num = layout.DIRECTIONS.get(direction, direction) if isinstance(direction, str) else direction
        if dir_num not in (layout.DIR_INGRESS, layout.DIR_EGRESS):
            raise ValueError(f"direction must be 'ingress' or 'egress', not {direction!r}")
        wanted: dict[tuple[int, int, int, int], PolicyEntry] = {}
        for e in entries:
            if not (
                0 <= e.dport < 65536
                and 0 <= e.end_port < 65536
                and 0 <= e.proto < 256
                and 0 <= e.identity < 2**32
                and 0 <= e.proxy_port < 65536
            ):
                raise ValueError(f"policy entry out of range: {e}")
            if e.deny and e.proxy_port:
                raise ValueError(f"a deny entry cannot redirect to a proxy: {e}")
            if e.is_range and not (e.dport and e.proto):
                raise ValueError(f"a port range needs a start port and a protocol: {e}")
            wanted[e.key] = e
        return self._write_policy(ep_id, dir_num, wanted)

    def upsert_policy_entries(self, ep_id: int, direction: str | int, entries: Any) -> int:
        """Adds or replaces some entries of an endpoint direction, leaving the others (toFQDNs' path).

        The cost is that of the entries given, not of the direction's whole policy; entries with a
        port range go through :meth:`set_policy_entries`. Returns how many entries were written.
        """
        dir_num = layout.DIRECTIONS[direction] if isinstance(direction, str) else direction
        entries = list(entries)
        current = self._policy.get((ep_id, dir_num), {})
        if any(e.is_range for e in entries):
            merged = dict(current)
            merged.update((e.key, e) for e in entries)
            self.set_policy_entries(ep_id, dir_num, merged.values())
            return len(entries)
        written = 0
        t = self.policy
        for e in entries:
            if not (
                0 <= e.dport < 65536
                and 0 <= e.proto < 256
                and 0 <= e.identity < 2**32
                and 0 <= e.proxy_port < 65536
            ):
                raise ValueError(f"policy entry out of range: {e}")
            if e.deny and e.proxy_port:
                raise ValueError(f"a deny entry cannot redirect to a proxy: {e}")
            if current.get(e.key) == e:
                continue
            val = t.Leaf()
            val.action = _action(e)
            val.cookie = e.cookie
            val.proxy_port = e.proxy_port
            t[t.Key(ep_id, e.identity, e.dport, e.proto, dir_num)] = val
            current[e.key] = e
            written += 1
        if written:
            self._policy[(ep_id, dir_num)] = current
        return written

    def policy_entries(self, ep_id: int, direction: str | int) -> list[PolicyEntry]:
        dir_num = layout.DIRECTIONS[direction] if isinstance(direction, str) else direction
        return list(self._policy.get((ep_id, dir_num), {}).values())

    def _write_policy(
        self, ep_id: int, dir_num: int, wanted: dict[tuple[int, int, int, int], PolicyEntry]
    ) -> PolicyDiff:
        current = self._policy.get((ep_id, dir_num), {})
        t = self.policy
        added = changed = 0
        for k, e in wanted.items():
            old = current.get(k)
            if old == e:
                continue
            if old is None:
                added += 1
            else:
                changed += 1
            if e.is_range:
                continue
            val = t.Leaf()
            val.action = _action(e)
            val.cookie = e.cookie
            val.proxy_port = e.proxy_port
            t[t.Key(ep_id, e.identity, e.dport, e.proto, dir_num)] = val
        self._write_ranges(ep_id, dir_num, [e for e in wanted.values() if e.is_range])
        removed = 0
        for k in current.keys() - wanted.keys():
            identity, dport, proto, end_port = k
            removed += 1
            if end_port > dport:
                continue
            with contextlib.suppress(KeyError):
                del t[t.Key(ep_id, identity, dport, proto, dir_num)]
        if wanted:
            self._policy[(ep_id, dir_num)] = dict(wanted)
        else:
            self._policy.pop((ep_id, dir_num), None)
        return PolicyDiff(added, changed, removed)

    def _range_key(self, ep_id: int, dir_num: int, block: tuple[int, int, int, int, int]) -> Any:
        identity, proto, action, start, bits = block
        key = self.policy_ranges.Key()
        key.prefixlen = layout.RANGE_FIXED_BITS + bits
        key.ep_id, key.direction, key.proto, key.identity, key.action = (
            ep_id,
            dir_num,
            proto,
            identity,
            action,
        )
        key.port[0], key.port[1] = start >> 8, start & 0xFF
        return key

    def _write_ranges(self, ep_id: int, dir_num: int, entries: list[PolicyEntry]) -> None:
        """Makes policy_ranges hold exactly the blocks of ``entries`` (new blocks first, then deletes)."""
        wanted: dict[tuple[int, int, int, int, int], tuple[int, int]] = {}
        for e in entries:
            action = _action(e)
            for start, bits in port_blocks(e.dport, e.end_port):
                wanted.setdefault((e.identity, e.proto, action, start, bits), (e.cookie, e.proxy_port))
        current = self._ranges.get((ep_id, dir_num), {})
        t = self.policy_ranges
        for block, (cookie, proxy_port) in wanted.items():
            if current.get(block) == (cookie, proxy_port):
                continue
            val = t.Leaf()
            val.action = block[2]
            val.cookie = cookie
            val.proxy_port = proxy_port
            t[self._range_key(ep_id, dir_num, block)] = val
        for block in current.keys() - wanted.keys():
            with contextlib.suppress(KeyError):
                del t[self._range_key(ep_id, dir_num, block)]
        if wanted:
            self._ranges[(ep_id, dir_num)] = wanted
        else:
            self._ranges.pop((ep_id, dir_num), None)
        ep = self._endpoints.get(ep_id)
        if ep is not None:
            has = any((ep_id, d) in self._ranges for d in (layout.DIR_INGRESS, layout.DIR_EGRESS))
            flags = ep.flags | layout.EP_HAS_RANGES if has else ep.flags & ~layout.EP_HAS_RANGES
            if flags != ep.flags:
                self.upsert_endpoint(ep_id, ep.ifindex, ep.identity, flags)

    def range_block_count(self, ep_id: int | None = None) -> int:
        """How many policy_ranges entries are written (of one endpoint, or all)."""
        return sum(len(v) for (ep, _), v in self._ranges.items() if ep_id is None or ep == ep_id)

    # -- conntrack --------------------------------------------------------------------------------
    def flush_conntrack(self, ep_id: int | None = None) -> int:
        """Deletes conntrack entries (of one endpoint, or all); returns how many."""
        doomed = [k for k in self.conntrack if ep_id is None or k.ep_id == ep_id]
        for k in doomed:
            with contextlib.suppress(KeyError):
                del self.conntrack[k]
        return len(doomed)

    def conntrack_count(self) -> int:
        return sum(1 for _ in self.conntrack)

    # -- monitor ----------------------------------------------------------------------------------
    def set_monitor_aggregation(self, level: str) -> None:
        """'none' = a trace event per packet; 'medium' = new connections and first SYN/FIN/RST per direction."""
        if level not in layout.AGGREGATION_LEVELS:
            raise ValueError(
                f"monitor aggregation must be one of {', '.join(layout.AGGREGATION_LEVELS)}, not {level!r}"
            )
        self._aggregation = level
        self._write_config()

    def set_payload_len(self, nbytes: int) -> None:
        """Packet bytes appended to each event (Cilium's --trace-payloadlen, default 128)."""
        if not 0 < nbytes <= 1500:
            raise ValueError("payload length must be 1..1500")
        self._payload_len = nbytes
        self._write_config()

    def set_conntrack_lifetimes(self, tcp: int = 21600, non_tcp: int = 60, closing: int = 10) -> None:
        """Idle seconds after which a connection is forgotten and its next packet judged again."""
        if min(tcp, non_tcp, closing) < 1:
            raise ValueError("conntrack lifetimes must be at least 1 second")
        self._lifetimes = (tcp, non_tcp, closing)
        self._write_config()

    def _write_config(self) -> None:
        val = self.config.Leaf()
        val.aggregation = layout.AGGREGATION_LEVELS[self._aggregation]
        val.payload_len = self._payload_len
        val.ct_lifetime_tcp, val.ct_lifetime_nontcp, val.ct_lifetime_closing = self._lifetimes
        self.config[self.config.Key(0)] = val

    @property
    def monitor_aggregation(self) -> str:
        return self._aggregation

    @property
    def events_map_fd(self) -> int:
        """fd of the perf event array; hand it to hubblepy.monitor.MonitorReader."""
        return int(self.events.map_fd)

    def open_monitor(self, **kwargs: Any) -> Any:
        """A MonitorReader on this datapath's events map (kwargs go to MonitorReader)."""
        from hubblepy.monitor import MonitorReader

        return MonitorReader(self.events_map_fd, **kwargs)

    def read_counters(self) -> dict[tuple[int, int], MetricCount]:
        """Per (reason, direction) packet and byte counts summed over CPUs; reason 0 = forwarded."""
        out: dict[tuple[int, int], MetricCount] = {}
        for k, per_cpu in self.metrics.items():
            packets = sum(v.packets for v in per_cpu)
            if not packets:
                continue
            idx = k.value
            out[(idx // 4, idx % 4)] = MetricCount(packets, sum(v.bytes for v in per_cpu))
        return out


__all__ = [
    "Datapath",
    "DatapathUnavailable",
    "MetricCount",
    "PolicyDiff",
    "PolicyEntry",
    "check_environment",
    "port_blocks",
]
