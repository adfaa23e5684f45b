"""Errors of the policy package: every one derives from :class:`PolicyError`."""


class PolicyError(Exception):
    """A policy that cannot be applied; the message is one line for the user."""


class IdentityExhausted(PolicyError):
    """No free identity is left in the local range."""
