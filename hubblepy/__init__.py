"""hubblepy: Hubble-compatible flow observability with an eBPF datapath."""

__version__ = "0.1.0"
