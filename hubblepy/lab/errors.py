"""Errors of the lab package: every one derives from :class:`LabError`."""


class LabError(Exception):
    """The lab cannot do what was asked; the message is one line for the user."""


class ScenarioError(LabError):
    """A scenario file that cannot be used; one line for the user."""


class ControlError(LabError):
    """The lab node cannot be reached or refused the request; one line for the user."""
