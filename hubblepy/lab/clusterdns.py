"""The lab's cluster DNS: the zone file the kube-dns pod serves and the pods' resolv.conf.

The zone is a JSON object ``{"<pod>.<namespace>.svc.cluster.local": "<pod IP>", ...}`` in the lab
directory, replaced atomically (the DNS server re-reads it when it changes, so recreated pods resolve
to their new IP). Every pod's ``/etc/netns/<netns>/resolv.conf`` points at the pod that runs a
``dns`` server, with the search path kubelet writes (ClusterFirst).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from hubblepy.lab import netns
from hubblepy.lab.pods import Pod

CLUSTER_DOMAIN = "cluster.local"
ZONE_FILE = "dns-zone.json"


def zone_path(folder: Path) -> Path:
    return folder / ZONE_FILE


def dns_pod(pods: Iterable[Pod]) -> Pod | None:
    """The pod running the cluster DNS server (the first with a ``dns`` server)."""
    return next((p for p in pods if any(s.kind == "dns" for s in p.servers)), None)


def write(folder: Path, pods: Iterable[Pod]) -> None:
    """Writes the zone file and, when there is a DNS pod, every pod's resolv.conf."""
    pods = list(pods)
    zone = {f"{p.name}.{p.namespace}.svc.{CLUSTER_DOMAIN}": p.ip for p in pods}
    tmp = folder / (ZONE_FILE + ".tmp")
    tmp.write_text(json.dumps(zone, indent=1))
    os.replace(tmp, zone_path(folder))
    dns = dns_pod(pods)
    if dns is None:
        return
    for pod in pods:
        netns.write_resolv_conf(pod.netns, dns.ip, pod.namespace, CLUSTER_DOMAIN)


__all__ = ["CLUSTER_DOMAIN", "dns_pod", "write", "zone_path"]
