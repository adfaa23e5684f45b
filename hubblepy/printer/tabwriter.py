"""A port of the semantics of Go's `text/tabwriter`, as used by `hubble observe -o table`.

Upstream builds its writer with minimum cell width 2, tab width 0, padding 3, pad character space
and no flags; those are the defaults here. Text is cut into cells at TAB and VT, and into lines at
LF and FF. The cells of one column are padded to the widest cell of their *column block* (a run of
consecutive lines that all have that column) plus the padding. The last cell of a line is never
padded. Widths count code points. A form feed, or a line that holds a single cell, flushes
everything buffered so far, so later lines start new column blocks. Output reaches `write` only on
those flushes and on `flush()`.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_CELL_OR_LINE_END = re.compile("([\t\v\n\f])")


class TabWriter:
    """Aligns TAB-separated cells into columns; see the module docstring for the exact rules."""

    def __init__(
        self,
        write: Callable[[str], object],
        minwidth: int = 2,
        padding: int = 3,
        padchar: str = " ",
    ) -> None:
        self._write = write
        self._minwidth = minwidth
        self._padding = padding
        self._padchar = padchar
        self._lines: list[list[str]] = [[]]
        self._cell: list[str] = []  # pieces of the cell being filled
        self._widths: list[int] = []
        self._out: list[str] = []

    def write(self, text: str) -> None:
        """Add text; completed lines are kept until a flush point."""
        pieces = _CELL_OR_LINE_END.split(text)
        cell = self._cell
        # pieces alternate: text, separator, text, separator, ..., text
        for index in range(1, len(pieces), 2):
            cell.append(pieces[index - 1])
            separator = pieces[index]
            line = self._lines[-1]
            line.append("".join(cell))
            cell.clear()
            if separator == "\n" or separator == "\f":
                self._lines.append([])
                if separator == "\f" or len(line) == 1:
                    self._flush_buffered()
        if pieces[-1]:
            cell.append(pieces[-1])

    def flush(self) -> None:
        """Write out everything buffered, including an unterminated last cell."""
        if self._cell:
            text = "".join(self._cell)
            self._cell.clear()
            if text:
                self._lines[-1].append(text)
        self._flush_buffered()

    def _flush_buffered(self) -> None:
        self._format(0, len(self._lines))
        self._lines = [[]]
        self._widths = []
        if self._out:
            self._write("".join(self._out))
            self._out = []

    def _format(self, line0: int, line1: int) -> None:
        lines = self._lines
        column = len(self._widths)
        this = line0
        while this < line1:
            if column >= len(lines[this]) - 1:
                this += 1
                continue
            # `this` starts a block of lines that all have a cell in `column`
            self._write_lines(line0, this)
            line0 = this
            width = self._minwidth
            padding = self._padding
            while this < line1:
                line = lines[this]
                if column >= len(line) - 1:
                    break
                cell_width = len(line[column]) + padding
                if cell_width > width:
                    width = cell_width
                this += 1
            self._widths.append(width)
            self._format(line0, this)
            self._widths.pop()
            line0 = this
        self._write_lines(line0, line1)

    def _write_lines(self, line0: int, line1: int) -> None:
        out = self._out
        widths = self._widths
        ncolumns = len(widths)
        padchar = self._padchar
        last = len(self._lines) - 1
        for index in range(line0, line1):
            line = self._lines[index]
            for column, text in enumerate(line):
                out.append(text)
                if column < ncolumns:
                    out.append(padchar * (widths[column] - len(text)))
            if index != last:
                out.append("\n")


def tabwrite(rows: list[list[str]]) -> str:
    """Rows of cells through a default :class:`TabWriter` (as upstream's tables), as one string."""
    out: list[str] = []
    writer = TabWriter(out.append)
    for row in rows:
        writer.write("\t".join(row) + "\n")
    writer.flush()
    return "".join(out)
