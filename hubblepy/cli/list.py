"""`hubble list`: raw-argv entry point (the words after `list`), implemented in :mod:`hubblepy.cli.live`."""

from __future__ import annotations

from hubblepy.cli.live import list_main


def main(argv: list[str]) -> int:
    """Run `hubble list` with ``argv``; returns the exit status."""
    return list_main(argv)
