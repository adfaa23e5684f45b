"""The lab's one base exception: every lab error that reaches the user is a :class:`LabError`.

Its message is one line for the user (``hubble lab: <message>``); the subclasses say which part of
the lab refused (scenario file, control request).
"""

from __future__ import annotations


class LabError(Exception):
    """A problem reported to the user as one line."""


__all__ = ["LabError"]
