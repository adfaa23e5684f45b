"""The one exception type raised while building filters."""

from __future__ import annotations


class FilterError(ValueError):
    """A FlowFilter could not be built.

    ``str(err)`` is the exact one-line message upstream hubble prints for the same problem,
    without any ``invalid argument ... for "--flag" flag:`` prefix (the CLI adds that when the
    error comes from parsing one flag value).
    """
