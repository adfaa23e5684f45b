"""Errors of the observer package (the node agent): every one derives from :class:`ObserverError`."""


class ObserverError(Exception):
    """The observer cannot do what was asked; the message is one line for the user."""


class AgentError(ObserverError):
    """A configuration problem of ``hubble agent``, reported as one line on stderr."""


class ReplayError(ObserverError):
    """The replay file cannot be used (missing, unreadable, or without any flow)."""


class BadRequest(ObserverError):
    """A request the server rejects with INVALID_ARGUMENT."""
