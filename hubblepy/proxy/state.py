"""The proxy's view of the node: endpoints, ipcache, identities and the L7 rule table, as one JSON file.

The node writes the file (:func:`write_state`, atomic: a temporary file renamed over the old one) and
sends the proxy SIGHUP; the proxy loads it whole (:func:`load_state`) and swaps it in, so a request
is judged by one consistent revision. A file that does not load keeps the previous state (and is
reported on stderr); a proxy without any state refuses every request (fail closed).

Format (``version`` 1)::

    {"version": 1, "revision": 7, "node": {"name": "lab-node", "ipv4": "10.244.0.1"},
     "proxy_port": 15001,
     "endpoints": [{"id": 101, "ipv4": "10.244.0.11", "identity": 257}],
     "ipcache": [["10.244.0.10/32", 256], ["192.0.2.0/24", 16777217]],
     "identities": {"256": ["k8s:app=frontend", ...]},
     "rules": {"5": {"policy": {flow.Policy dict}, "rule": "CiliumNetworkPolicy payments/x spec.ingress[0]"}},
     "l7": [...]}                        # hubblepy.policy.l7.table_to_json

``rules`` maps the compiler's cookies to the policy they name, for attribution in access-log records.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from hubblepy.policy.attribution import policy_dict
from hubblepy.policy.compiler import CookieJar
from hubblepy.policy.l7 import L7Table, RuleSet, table_from_json, table_to_json
from hubblepy.policy.model import EGRESS, INGRESS, PolicyRef

STATE_VERSION = 1
IDENTITY_WORLD = 2


class StateError(Exception):
    """A state file that cannot be used; the message is one line."""


@dataclass(frozen=True)
class EndpointInfo:
    """One side of a connection as the access log shows it."""

    id: int  # local endpoint id, 0 when not local
    ip: str
    identity: int
    labels: tuple[str, ...]


@dataclass
class ProxyState:
    revision: int = 0
    node: dict = field(default_factory=dict)
    proxy_port: int = 0
    endpoints: dict[str, tuple[int, int]] = field(default_factory=dict)  # ip -> (endpoint id, identity)
    prefixes: list[tuple[int, int, int]] = field(default_factory=list)  # (prefixlen, network int, identity)
    hosts: dict[str, int] = field(default_factory=dict)  # /32 fast path: ip -> identity
    identities: dict[int, tuple[str, ...]] = field(default_factory=dict)
    rules: dict[int, dict] = field(default_factory=dict)
    l7: L7Table = field(default_factory=L7Table)
    loaded: bool = False

    def identity_of(self, ip: str) -> int:
        """The security identity of an IPv4 address: local endpoint, then longest ipcache prefix, else world."""
        found = self.endpoints.get(ip)
        if found is not None:
            return found[1]
        found_host = self.hosts.get(ip)
        if found_host is not None:
            return found_host
        try:
            value = int(ipaddress.IPv4Address(ip))
        except ValueError:
            return IDENTITY_WORLD
        for prefixlen, network, identity in self.prefixes:  # longest first
            if prefixlen == 0 or (value >> (32 - prefixlen)) == network:
                return identity
        return IDENTITY_WORLD

    def endpoint(self, ip: str) -> EndpointInfo:
        local = self.endpoints.get(ip)
        identity = local[1] if local else self.identity_of(ip)
        return EndpointInfo(local[0] if local else 0, ip, identity, self.identities.get(identity, ()))

    def rule_sets(
        self, src: EndpointInfo, dst: EndpointInfo, port: int, proto: int = 6
    ) -> list[tuple[int, RuleSet]]:
        """The L7 rule sets that judge a connection, in path order: the source's egress, the destination's ingress."""
        out: list[tuple[int, RuleSet]] = []
        if src.id:
            found = self.l7.rule_set(src.id, EGRESS, dst.identity, port, proto)
            if found is not None:
                out.append((EGRESS, found))
        if dst.id:
            found = self.l7.rule_set(dst.id, INGRESS, src.identity, port, proto)
            if found is not None:
                out.append((INGRESS, found))
        return out


def state_to_json(
    *,
    revision: int,
    l7: L7Table,
    rules: Mapping[int, dict],
    endpoints: Iterable[tuple[int, str, int]],
    ipcache: Iterable[tuple[str, int]],
    identities: Mapping[int, Iterable[str]],
    node: Mapping[str, str] | None = None,
    proxy_port: int = 0,
) -> dict[str, Any]:
    """The state file's document. ``endpoints`` are (id, IPv4, identity); ``rules`` cookie -> attribution."""
    return {
        "version": STATE_VERSION,
        "revision": revision,
        "node": dict(node or {}),
        "proxy_port": proxy_port,
        "endpoints": [{"id": e, "ipv4": ip, "identity": i} for e, ip, i in endpoints],
        "ipcache": [[prefix, identity] for prefix, identity in ipcache],
        "identities": {str(k): list(v) for k, v in identities.items()},
        "rules": {str(k): v for k, v in rules.items()},
        "l7": table_to_json(l7),
    }


def attribution_rules(
    l7: L7Table, cookies: CookieJar, revision: int = 0, uids: Mapping[PolicyRef, str] | None = None
) -> dict[int, dict]:
    """cookie -> {"policy": flow.Policy dict, "rule": "Kind ns/name spec.ingress[0]"} for the table's rules."""
    out: dict[int, dict] = {}
    for contributions in l7.tables.values():
        for c in contributions:
            if c.cookie in out:
                continue
            ref = cookies.lookup(c.cookie)
            if ref is None:
                continue
            rule = ref.describe() if ref.policy.kind != "reserved" else f"reserved {ref.policy.name}"
            out[c.cookie] = {
                "policy": policy_dict(ref.policy, revision, (uids or {}).get(ref.policy, "")),
                "rule": rule,
            }
    return out


def write_state(path: str | Path, document: Mapping[str, Any]) -> None:
    """Writes the state file atomically (readers see the old or the new file, never a part)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=".proxy-state-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(orjson.dumps(document))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def parse_state(raw: bytes) -> ProxyState:
    """A state document -> :class:`ProxyState`; raises StateError."""
    try:
        doc = orjson.loads(raw)
        if doc.get("version") != STATE_VERSION:
            raise StateError(f"unsupported state version {doc.get('version')!r}")
        state = ProxyState(revision=int(doc.get("revision", 0)), node=dict(doc.get("node") or {}))
        state.proxy_port = int(doc.get("proxy_port", 0))
        for item in doc.get("endpoints", ()):
            state.endpoints[str(item["ipv4"])] = (int(item["id"]), int(item["identity"]))
        prefixes = []
        for prefix, identity in doc.get("ipcache", ()):
            net = ipaddress.ip_network(prefix, strict=False)
            if net.version != 4:
                continue
            if net.prefixlen == 32:
                state.hosts[str(net.network_address)] = int(identity)
            prefixes.append(
                (
                    net.prefixlen,
                    int(net.network_address) >> (32 - net.prefixlen) if net.prefixlen else 0,
                    int(identity),
                )
            )
        state.prefixes = sorted(prefixes, reverse=True)
        state.identities = {int(k): tuple(v) for k, v in (doc.get("identities") or {}).items()}
        state.rules = {int(k): v for k, v in (doc.get("rules") or {}).items()}
        state.l7 = table_from_json(doc.get("l7") or [])
    except StateError:
        raise
    except (ValueError, KeyError, TypeError, IndexError, orjson.JSONDecodeError) as exc:
        raise StateError(f"bad proxy state: {exc}") from None
    state.loaded = True
    return state


def load_state(path: str | Path) -> ProxyState:
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise StateError(f"cannot read proxy state {path}: {exc.strerror}") from None
    return parse_state(raw)
