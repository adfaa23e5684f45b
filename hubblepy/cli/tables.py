"""Tables of the lab and policy commands: aligned plain text on pipes, rich tables on a terminal.

A script reading ``hubble lab status`` or ``hubble policy audit-report`` gets the same plain columns
whatever the terminal (two spaces between columns, no colour). A person at a terminal gets the rows
drawn by ``rich`` (bold header, a rule under it), fitted to the terminal's width. ``NO_COLOR`` or
``TERM=dumb`` keep the plain form on a terminal too. ``rich`` is imported only when it draws.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Callable, Sequence
from typing import Any

Rows = Sequence[Sequence[str]]  # the header row first
Renderer = Callable[[Rows], list[str]]


def plain_lines(rows: Rows) -> list[str]:
    """Left-aligned columns separated by two spaces, trailing blanks removed."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def rich_lines(rows: Rows, width: int | None = None) -> list[str]:
    """The rows as a rich table (ANSI styles included), one string per terminal line."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False, show_edge=False)
    for name in rows[0]:
        table.add_column(name, overflow="fold")
    for row in rows[1:]:
        table.add_row(*row)
    buffer = io.StringIO()
    columns = width or shutil.get_terminal_size((120, 24)).columns
    Console(file=buffer, force_terminal=True, width=columns, highlight=False).print(table)
    return buffer.getvalue().rstrip("\n").split("\n")


def renderer_for(stream: Any) -> Renderer:
    """:func:`rich_lines` when ``stream`` is a terminal (and colour is not turned off), else plain."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return plain_lines
    try:
        terminal = stream.isatty()
    except (AttributeError, ValueError):
        terminal = False
    return rich_lines if terminal else plain_lines
