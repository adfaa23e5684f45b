"""Agent events (``flow.AgentEvent``) as Cilium's agent sends them, and a publisher that queues them.

The builders return canonical ``flow.AgentEvent`` dicts (enum names, 64-bit integers as strings,
timestamps as RFC 3339 text), one per kind of notification the Cilium agent sends to Hubble:

* ``AGENT_STARTED`` (``agent_start.time``): the agent came up;
* ``POLICY_UPDATED`` / ``POLICY_DELETED`` (``policy_update``): one policy imported or removed, with
  its labels (repeated once per rule, as the agent joins every rule's labels), the policy revision
  after the change and the number of rules added or deleted;
* ``ENDPOINT_CREATED`` / ``ENDPOINT_DELETED`` (``endpoint_update``): an endpoint with its ID, its
  identity labels, pod name and namespace;
* ``IPCACHE_UPSERTED`` / ``IPCACHE_DELETED`` (``ipcache_update``): an ipcache entry (prefix ->
  identity), with the identity it had before when an upsert changed it.

:class:`AgentEventPublisher` stamps each event when it happens and holds it until an observer is
attached (a lab node computes its policies and endpoints before its observer serves), then
publishes everything in order; after that each event goes straight into the observer's ring.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any, Protocol

from hubblepy.codec.timestamps import format_ns

AGENT_STARTED = "AGENT_STARTED"
POLICY_UPDATED = "POLICY_UPDATED"
POLICY_DELETED = "POLICY_DELETED"
ENDPOINT_CREATED = "ENDPOINT_CREATED"
ENDPOINT_DELETED = "ENDPOINT_DELETED"
IPCACHE_UPSERTED = "IPCACHE_UPSERTED"
IPCACHE_DELETED = "IPCACHE_DELETED"

PENDING_LIMIT = 4096  # events held before an observer is attached (the oldest go first)


class AgentEventSink(Protocol):
    """Where agent events go (:class:`hubblepy.observer.core.Observer`)."""

    def publish_agent_event(self, time_ns: int, event: dict[str, Any]) -> None: ...


def agent_started(time_ns: int) -> dict[str, Any]:
    """``AGENT_STARTED`` with the agent's start time."""
    return {"type": AGENT_STARTED, "agent_start": {"time": format_ns(time_ns)}}


def policy_update(
    labels: Iterable[str], revision: int, rule_count: int, deleted: bool = False
) -> dict[str, Any]:
    """``POLICY_UPDATED`` (or ``POLICY_DELETED``): the policy's labels, revision and rule count."""
    if revision < 0:
        raise ValueError(f"policy revision must not be negative, got {revision}")
    body: dict[str, Any] = {}
    label_list = list(labels)
    if label_list:
        body["labels"] = label_list
    if revision:
        body["revision"] = str(revision)
    if rule_count:
        body["rule_count"] = str(rule_count)
    return {"type": POLICY_DELETED if deleted else POLICY_UPDATED, "policy_update": body}


def endpoint_update(
    endpoint_id: int,
    labels: Iterable[str] = (),
    pod_name: str = "",
    namespace: str = "",
    deleted: bool = False,
) -> dict[str, Any]:
    """``ENDPOINT_CREATED`` (or ``ENDPOINT_DELETED``): the endpoint's ID, labels, pod and namespace."""
    if endpoint_id < 0:
        raise ValueError(f"endpoint ID must not be negative, got {endpoint_id}")
    body: dict[str, Any] = {}
    if endpoint_id:
        body["id"] = str(endpoint_id)
    label_list = list(labels)
    if label_list:
        body["labels"] = label_list
    if pod_name:
        body["pod_name"] = pod_name
    if namespace:
        body["namespace"] = namespace
    return {"type": ENDPOINT_DELETED if deleted else ENDPOINT_CREATED, "endpoint_update": body}


def ipcache_update(
    cidr: str,
    identity: int,
    *,
    old_identity: int | None = None,
    host_ip: str = "",
    old_host_ip: str = "",
    encrypt_key: int = 0,
    namespace: str = "",
    pod_name: str = "",
    deleted: bool = False,
) -> dict[str, Any]:
    """``IPCACHE_UPSERTED`` (or ``IPCACHE_DELETED``) for one ipcache entry.

    ``old_identity`` is set only when an upsert replaced an entry with another identity (the
    wrapper field is then present, even for 0).
    """
    if not cidr:
        raise ValueError("an ipcache event needs a CIDR")
    if not 0 <= identity < 1 << 32:
        raise ValueError(f"identity out of range: {identity}")
    body: dict[str, Any] = {"cidr": cidr}
    if identity:
        body["identity"] = identity
    if old_identity is not None:
        body["old_identity"] = old_identity
    if host_ip:
        body["host_ip"] = host_ip
    if old_host_ip:
        body["old_host_ip"] = old_host_ip
    if encrypt_key:
        body["encrypt_key"] = encrypt_key
    if namespace:
        body["namespace"] = namespace
    if pod_name:
        body["pod_name"] = pod_name
    return {"type": IPCACHE_DELETED if deleted else IPCACHE_UPSERTED, "ipcache_update": body}


class AgentEventPublisher:
    """Stamps agent events and publishes them into an observer, holding them until one is attached."""

    def __init__(self) -> None:
        self._sink: AgentEventSink | None = None
        self._pending: list[tuple[int, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self.published = 0
        self.dropped = 0  # held events dropped because more than PENDING_LIMIT waited

    def publish(self, event: dict[str, Any], time_ns: int | None = None) -> None:
        """Publishes ``event`` (stamped now unless ``time_ns`` is given), or holds it until attach."""
        when = time.time_ns() if time_ns is None else time_ns
        with self._lock:
            sink = self._sink
            if sink is None:
                if len(self._pending) >= PENDING_LIMIT:
                    del self._pending[0]
                    self.dropped += 1
                self._pending.append((when, event))
                return
            sink.publish_agent_event(when, event)
            self.published += 1

    def attach(self, sink: AgentEventSink) -> None:
        """From now on events go to ``sink``; the ones held so far are published first, in order."""
        with self._lock:
            for when, event in self._pending:
                sink.publish_agent_event(when, event)
            self.published += len(self._pending)
            self._pending.clear()
            self._sink = sink

    def detach(self) -> None:
        """Stops publishing (events after this are held again, e.g. while the observer stops)."""
        with self._lock:
            self._sink = None

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)


class IPCacheEvents:
    """The ipcache as the agent events saw it: an upsert names the identity it replaced, an upsert
    that changes nothing and a delete of an unknown prefix send nothing."""

    def __init__(self, publisher: AgentEventPublisher) -> None:
        self.publisher = publisher
        self._entries: dict[str, int] = {}

    def upsert(self, cidr: str, identity: int, **meta: Any) -> None:
        old = self._entries.get(cidr)
        if old == identity:
            return
        self._entries[cidr] = identity
        self.publisher.publish(ipcache_update(cidr, identity, old_identity=old, **meta))

    def delete(self, cidr: str, **meta: Any) -> None:
        identity = self._entries.pop(cidr, None)
        if identity is None:
            return
        self.publisher.publish(ipcache_update(cidr, identity, deleted=True, **meta))

    def __len__(self) -> int:
        return len(self._entries)


__all__ = [
    "AgentEventPublisher",
    "IPCacheEvents",
    "AgentEventSink",
    "agent_started",
    "endpoint_update",
    "ipcache_update",
    "policy_update",
]
