"""tc clsact attach/detach of the endpoint programs with pyroute2.

The programs go on the HOST side of a pod's veth: clsact ingress (parent ffff:fff2) sees what the pod
sends, clsact egress (parent ffff:fff3) what is delivered to it. Filters are bpf, direct-action, with
a name starting with ``hubblepy`` so leftovers can be recognised.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

PARENT_INGRESS = 0xFFFFFFF2
PARENT_EGRESS = 0xFFFFFFF3
FILTER_PRIO = 1
FILTER_NAME_PREFIX = "hubblepy"


@contextmanager
def netlink(netns: str | None = None) -> Iterator[IPRoute]:
    """An IPRoute socket, in the named network namespace when given."""
    ipr = IPRoute(netns=netns) if netns else IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


def resolve_ifindex(ipr: IPRoute, interface: str | int) -> int:
    if isinstance(interface, int):
        return interface
    found = ipr.link_lookup(ifname=interface)
    if not found:
        raise LookupError(f"interface {interface!r} not found")
    return int(found[0])


def has_clsact(ipr: IPRoute, ifindex: int) -> bool:
    return any(q.get_attr("TCA_KIND") == "clsact" for q in ipr.get_qdiscs(index=ifindex))


def attach(
    ipr: IPRoute, ifindex: int, ingress_fd: int, egress_fd: int | None, names: tuple[str, str]
) -> bool:
    """Adds clsact (if missing) and the filters (no egress one when ``egress_fd`` is None); returns True
    when the clsact qdisc was created here."""
    created = False
    if not has_clsact(ipr, ifindex):
        ipr.tc("add", "clsact", ifindex)
        created = True
    for parent, fd, name in ((PARENT_INGRESS, ingress_fd, names[0]), (PARENT_EGRESS, egress_fd, names[1])):
        if fd is None:
            continue
        ipr.tc(
            "replace-filter",
            "bpf",
            ifindex,
            ":1",
            fd=fd,
            name=f"{FILTER_NAME_PREFIX}:{name}",
            parent=parent,
            prio=FILTER_PRIO,
            classid=1,
            direct_action=True,
        )
    return created


def detach(ipr: IPRoute, ifindex: int, remove_qdisc: bool) -> None:
    """Removes our filters (or the whole clsact qdisc we created). A vanished interface is not an error."""
    try:
        if remove_qdisc:
            ipr.tc("del", "clsact", ifindex)
            return
        for parent in (PARENT_INGRESS, PARENT_EGRESS):
            try:
                ipr.tc("del-filter", "bpf", ifindex, ":1", parent=parent, prio=FILTER_PRIO)
            except NetlinkError as exc:
                if exc.code != errno.ENOENT:  # an ingress-only attachment has no egress filter
                    raise
    except NetlinkError as exc:
        if exc.code not in (errno.ENODEV, errno.ENOENT, errno.EINVAL):
            raise


def our_filter_names(ipr: IPRoute, ifindex: int) -> list[str]:
    """Names of the hubblepy bpf filters on an interface (both directions)."""
    names: list[str] = []
    for parent in (PARENT_INGRESS, PARENT_EGRESS):
        try:
            filters = ipr.get_filters(index=ifindex, parent=parent)
        except NetlinkError:
            continue
        for f in filters:
            opts = f.get_attr("TCA_OPTIONS")
            name = opts.get_attr("TCA_BPF_NAME") if opts is not None else None
            if name and name.startswith(FILTER_NAME_PREFIX):
                names.append(name)
    return names


def cleanup_stale(prefix: str, netns: str | None = None) -> list[str]:
    """Removes clsact qdiscs from every interface whose name starts with ``prefix``.

    Used after a crash: filters keep BPF programs alive after their process died. Returns the
    interface names that were cleaned.
    """
    cleaned: list[str] = []
    with netlink(netns) as ipr:
        for link in ipr.get_links():
            name = link.get_attr("IFLA_IFNAME") or ""
            if not name.startswith(prefix):
                continue
            if has_clsact(ipr, link["index"]):
                detach(ipr, link["index"], remove_qdisc=True)
                cleaned.append(name)
    return cleaned
