"""hubble-relay: one gRPC endpoint (default :4245) that serves the flows of every Hubble node.

Modules: :mod:`relay.main` (flags, ``hubble-relay`` entry point), :mod:`relay.peers` (node discovery
and connections), :mod:`relay.service` (the relay's observer.Observer), :mod:`relay.merge` (the
time-ordering sort buffer), :mod:`relay.wire` (reading a response's time without decoding it).
"""
