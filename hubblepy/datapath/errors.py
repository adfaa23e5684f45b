"""Errors of the datapath package: every one derives from :class:`DatapathError`.

Bad arguments (an endpoint id out of range, an unknown direction) stay ``ValueError``/``KeyError``:
they are the caller's bug, not the datapath's state.
"""


class DatapathError(RuntimeError):
    """The eBPF datapath failed; the message is one line for the user."""


class DatapathUnavailable(DatapathError):
    """The eBPF datapath cannot run here; the message is one line saying what is missing and how to fix it."""
