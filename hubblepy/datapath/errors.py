"""Errors of the datapath package: every one derives from :class:`DatapathError`.

Bad arguments (an endpoint id out of range, an unknown direction) stay ``ValueError``/``KeyError``:
they are the caller's bug, not the datapath's state.
"""

from __future__ import annotations


class DatapathError(RuntimeError):
    """The eBPF datapath failed; the message is one line for the user."""


class DatapathUnavailable(DatapathError):
    """The eBPF datapath cannot run here; the message is one line saying what is missing and how to fix it."""


class VerifierRejected(DatapathUnavailable):
    """The kernel's verifier refused a program.

    The message stays one line (the verifier's own verdict and where the whole log was written);
    ``log`` holds the verifier's whole log and ``log_path`` the file it was written to ("" when it
    could not be written).
    """

    def __init__(self, message: str, log: str, log_path: str) -> None:
        super().__init__(message)
        self.log = log
        self.log_path = log_path
