"""`hubble status`: raw-argv entry point (the words after `status`), implemented in :mod:`hubblepy.cli.live`."""

from __future__ import annotations

from hubblepy.cli.live import status_main


def main(argv: list[str]) -> int:
    """Run `hubble status` with ``argv``; returns the exit status."""
    return status_main(argv)
