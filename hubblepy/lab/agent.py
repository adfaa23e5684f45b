"""The node agent inside the lab node: observer ring + gRPC server, its flow sources, and the relay.

:class:`NodeAgent` serves the node's observer (Observer/Peer/health, as ``hubble agent``) on the
listen address, runs each flow source in its own thread (the eBPF datapath's perf ring, and with L7
the proxies' access log, see :class:`~hubblepy.lab.source.AccessLogSource`), and starts
``hubble-relay`` pointed at it as a supervised child.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from hubblepy.lab.processes import Supervisor, python_module

if TYPE_CHECKING:
    from hubblepy.observer.core import Observer
    from hubblepy.observer.server import ObserverServer
    from hubblepy.observer.sources import FlowSource

RELAY = "relay"


class NodeAgent:
    """Observer, gRPC server, flow-source threads and the relay child of one lab node."""

    def __init__(self, node_name: str, listen_address: str, relay_address: str, children: Supervisor) -> None:
        self.node_name = node_name
        self.listen_address = listen_address
        self.relay_address = relay_address
        self.children = children
        self.observer: Observer | None = None
        self.server: ObserverServer | None = None
        self.stop_event = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self, relay_args: Sequence[str] = ()) -> None:
        """Serves the observer and starts the relay (``relay_args``: extra flags, e.g. its metrics)."""
        from hubblepy.observer.core import Observer
        from hubblepy.observer.server import ObserverServer, ServerConfig

        self.observer = Observer(self.node_name)
        self.server = ObserverServer(
            self.observer, ServerConfig(listen_address=self.listen_address, max_workers=16)
        )
        self.server.start()
        self.children.start(
            RELAY,
            python_module(
                "relay",
                "--listen-address",
                self.relay_address,
                "--peers",
                f"{self.node_name}={self.listen_address}",
                "--node-name",
                self.node_name,
                *relay_args,
            ),
        )

    def add_source(self, source: FlowSource) -> None:
        """Runs ``source`` in its own thread until :meth:`stop`, publishing into the observer."""
        if self.observer is None:
            raise RuntimeError("the agent is not started")
        t = threading.Thread(
            target=source.run,
            args=(self.observer, self.stop_event),
            name=f"source-{source.name}",
            daemon=True,
        )
        t.start()
        self._threads.append(t)

    @property
    def relay_pid(self) -> int:
        child = self.children.get(RELAY)
        return child.pid if child is not None else 0

    def stop_relay(self) -> None:
        self.children.stop(RELAY)

    def stop(self) -> None:
        self.stop_event.set()
        self.stop_relay()
        if self.server is not None:
            self.server.stop(grace=0.3)
        for t in self._threads:
            t.join(timeout=2)


__all__ = ["NodeAgent"]
