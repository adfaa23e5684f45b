"""`hubble agent`: raw-argv entry point (the words after `agent`), see :mod:`hubblepy.observer.agent`."""

from __future__ import annotations

from hubblepy.observer.agent import run_agent


def main(argv: list[str]) -> int:
    """Run `hubble agent` with ``argv``; returns the exit status."""
    return run_agent(argv)
