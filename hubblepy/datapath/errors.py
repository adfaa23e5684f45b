"""Errors of the datapath package."""


class DatapathUnavailable(RuntimeError):
    """The eBPF datapath cannot run here; the message is one line saying what is missing and how to fix it."""
