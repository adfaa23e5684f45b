"""The print options of `hubble observe`: its formatting flags resolved into :class:`PrintOptions`."""

from __future__ import annotations

import os
from typing import Any, BinaryIO

from hubblepy.printer.printer import PrintOptions


def use_color(mode: str, stdout: BinaryIO) -> bool:
    """``--color``: ``always``, ``never``, or (anything else) whether ``stdout`` is a terminal.

    ``NO_COLOR`` or ``TERM=dumb`` turn ``auto`` off.
    """
    mode = mode.lower()
    if mode == "always":
        return True
    if mode == "never":
        return False
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return os.isatty(stdout.fileno())
    except (AttributeError, OSError, ValueError):
        return False


def observe_print_options(args: Any, stdout: BinaryIO) -> PrintOptions:
    """The printer settings for parsed observe arguments, with ``--color auto`` resolved against ``stdout``."""
    return PrintOptions(
        output=args.output,
        time_format=args.time_format,
        color=use_color(args.color, stdout),
        print_node_name=args.print_node_name,
        print_policy_names=args.print_policy_names,
        numeric=args.numeric or not args.ip_translation,
        debug=args.debug,
        silent_errors=args.silent_errors,
        legacy_json=args.legacy_json,
    )
