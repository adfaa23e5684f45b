"""`hubble watch`: raw-argv entry point (the words after `watch`), implemented in :mod:`hubblepy.cli.live`."""

from __future__ import annotations

from hubblepy.cli.live import watch_main


def main(argv: list[str]) -> int:
    """Run `hubble watch` with ``argv``; returns the exit status."""
    return watch_main(argv)
