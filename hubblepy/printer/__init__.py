"""Printers for `hubble observe` output: compact, dict, table and JSON, byte-compatible with upstream.

Usage::

    printer = Printer(PrintOptions(output="compact"), sys.stdout.buffer, sys.stderr.buffer)
    try:
        for response in responses:  # canonical GetFlowsResponse dicts
            printer.write(response)
    finally:
        printer.close()
"""

from .printer import OUTPUT_FORMATS, Printer, PrintOptions, join_with_cutoff
from .timefmt import TIME_FORMAT_NAMES, resolve_time_format

__all__ = [
    "OUTPUT_FORMATS",
    "TIME_FORMAT_NAMES",
    "PrintOptions",
    "Printer",
    "join_with_cutoff",
    "resolve_time_format",
]
