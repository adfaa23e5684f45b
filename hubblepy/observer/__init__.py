"""Node observer: the flow ring buffer, flow sources and the gRPC Observer/Peer/health services.

Data flow inside one node::

    FlowSource (replay file, eBPF datapath, ...) --publish--> Observer.ring (Ring of RingEntry)
        --> GetFlows readers (filters compiled once per request, LostEvent when a reader falls behind)

Public pieces: :class:`~hubblepy.observer.ring.Ring`, :class:`~hubblepy.observer.sources.FlowSource`,
:class:`~hubblepy.observer.sources.ReplaySource`, :class:`~hubblepy.observer.server.ObserverServer`
and :func:`~hubblepy.observer.agent.run_agent` (the ``hubble agent`` command).
"""
