"""Large flows files on several cores, with the same output as the one-process reader.

`hubble observe --input-file` spends its time decoding, checking and formatting each line, and
every line is independent of the others except for one rule: after the first line with an unknown
field (which is warned about once), the rest of the input is decoded leniently. So a big regular
file is cut at line boundaries into blocks; forked worker processes each read, filter and format
their blocks; the parent writes the blocks' output in file order. A worker decodes strictly and stops
at a line with an unknown field; the parent then warns once and finishes that block itself, leniently.
Later blocks are unaffected: a line without unknown fields decodes the same in both modes, and a
line with one makes its worker stop again.

When standard output is a file descriptor, a worker writes a finished block itself when it is the
block's turn: the turn is the index of the next block to write, shared by all processes; a worker
whose block is clean (no warning, no early stop) and due writes it and passes the turn on. Any
other block goes to the parent (a worker never waits for its turn: on a busy machine that would
idle it), which writes it when its result comes, in order, and passes the turn on. So much of the
output is never copied to the parent. (The parent handles results in file order, so when it gets
a block's result every earlier block is written, and the turn is that block's.)

Workers start at once, before anyone knows where their lines are in the file: they number lines
from 1 and report how many their block holds. The parent learns each block's first line number as
it writes the blocks in order; a block whose worker printed warnings (which carry line numbers) is
printed again by the parent, numbered right. Warnings are rare, so nearly every block is printed
by its worker alone.

Only formats whose records print independently of each other (compact, JSON) and runs without
``--first``/``--last``/``--jq`` take this path; the caller decides (:func:`usable`).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from hubblepy.cli.file_input import TOKEN_TOO_LONG, InputError, clean_lines

if TYPE_CHECKING:
    from hubblepy.printer import Printer

BLOCK_BYTES = 4 << 20
MIN_FILE_BYTES = 16 << 20


def _setting(name: str, default: int) -> int:
    """A size from the environment (tests use small ones to exercise many blocks)."""
    try:
        return int(os.environ[name])
    except (KeyError, ValueError):
        return default


class StopBlock(Exception):
    """Raised in a worker by the decoder's first unknown-field report; ``index`` is the line's."""

    index = -1


@dataclass
class LineJob:
    """Everything a worker needs to turn lines into output; inherited by fork, never pickled."""

    make_decoder: Callable[[bool, Callable[[str], None] | None], object]
    process: Callable[..., None]  # process(lines, first_line_number, decoder, printer, err)
    make_printer: Callable[[BinaryIO, BinaryIO], Printer]


@dataclass
class BlockResult:
    """One block's output, and where (and why) the worker stopped early."""

    out: bytes
    err: bytes
    newlines: int  # the number of line ends in the block
    stopped_at: int = -1  # index of the line the worker did not finish, or -1
    reason: str = ""  # "unknown-field" or "too-long"
    written: bool = False  # the worker wrote ``out`` itself, in turn (``out`` is then empty)


@dataclass
class Turn:
    """The output descriptor and the index of the next block to write to it, shared by fork."""

    fd: int
    next_block: Any  # a multiprocessing RawValue("q")
    lock: Any  # a multiprocessing Lock guarding next_block

    def write_if_due(self, index: int, data: bytes) -> bool:
        """Write block ``index`` and pass the turn on if the turn is this block's, or return False
        (without waiting: a worker does not stall, the parent writes the block then)."""
        with self.lock:
            if self.next_block.value != index:
                return False
        _write_all(self.fd, data)  # only the block whose turn it is writes: no lock needed
        self.pass_on(index)
        return True

    def pass_on(self, index: int) -> None:
        """Block ``index`` is written: the next one may be."""
        with self.lock:
            self.next_block.value = index + 1


_JOB: LineJob | None = None
_TURN: Turn | None = None


def usable(path: str, output: str, sequential_only: bool) -> bool:
    """Whether this run may use workers: a big regular file, an independent format, two cores."""
    if sequential_only or output not in ("compact", "json") or path == "-":
        return False
    if os.environ.get("HUBBLEPY_WORKERS", "") == "1" or (os.cpu_count() or 1) < 2:
        return False
    try:
        minimum = _setting("HUBBLEPY_PARALLEL_MIN_BYTES", MIN_FILE_BYTES)
        return os.path.isfile(path) and os.path.getsize(path) >= minimum
    except OSError:
        return False


def block_bounds(stream: BinaryIO, size: int, block_bytes: int = 0) -> list[tuple[int, int]]:
    """Byte ranges that start at line starts and cover the file."""
    block_bytes = block_bytes or _setting("HUBBLEPY_PARALLEL_BLOCK_BYTES", BLOCK_BYTES)
    bounds = []
    start = 0
    while start < size:
        end = min(start + block_bytes, size)
        if end < size:
            stream.seek(end)
            tail = stream.readline()
            end += len(tail)
        bounds.append((start, end))
        start = end
    return bounds


def _block_lines(data: bytes) -> tuple[list[bytes], bool, int]:
    """A block's lines (its final newline is a terminator, not an empty line; see
    file_input.split_lines), whether a line too long cut them short, and its number of newlines."""
    lines = data.split(b"\n")
    newlines = len(lines) - 1
    if data.endswith(b"\n"):
        lines.pop()
    return (*clean_lines(lines, b"\r" in data), newlines)


def _stop(text: str) -> None:
    raise StopBlock(text)


def _work(task: tuple[str, int, int, int, int]) -> BlockResult:
    result = _work_block(task[:4])
    if _TURN is not None and not result.err and not result.reason and _TURN.write_if_due(task[4], result.out):
        result.out = b""
        result.written = True
    return result


def _write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` (a pipe may take it in parts)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _output_fd(stream: BinaryIO) -> int:
    """The file descriptor under ``stream``, or -1 when it has none (a test's BytesIO)."""
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        return -1


def _work_block(task: tuple[str, int, int, int]) -> BlockResult:
    path, start, end, first_line_number = task
    assert _JOB is not None
    with open(path, "rb") as stream:
        stream.seek(start)
        data = stream.read(end - start)
    lines, too_long, newlines = _block_lines(data)
    out, err = io.BytesIO(), io.BytesIO()
    printer = _JOB.make_printer(out, err)
    decoder = _JOB.make_decoder(False, _stop)
    try:
        _JOB.process(lines, first_line_number, decoder, printer, err)
    except StopBlock as stop:
        printer.close()
        return BlockResult(out.getvalue(), err.getvalue(), newlines, stop.index, "unknown-field")
    printer.close()
    if too_long:
        return BlockResult(out.getvalue(), err.getvalue(), newlines, len(lines), "too-long")
    return BlockResult(out.getvalue(), err.getvalue(), newlines)


def run(
    path: str,
    job: LineJob,
    stdout: BinaryIO,
    stderr: BinaryIO,
    warn_unknown: Callable[[str], None],
    workers: int | None = None,
    on_block: Callable[[int], None] | None = None,
) -> None:
    """Process ``path`` with worker processes and write its output in file order.

    ``on_block(size)`` is called with each block's size in bytes once its output is written.
    """
    global _JOB, _TURN
    with open(path, "rb") as stream:
        size = os.fstat(stream.fileno()).st_size
        bounds = block_bounds(stream, size)
    # Workers number their lines from 1; the parent knows the true numbers once earlier blocks are in.
    tasks = [(path, start, end, 1, index) for index, (start, end) in enumerate(bounds)]
    number = 1
    _JOB = job
    import multiprocessing  # lazy: start-up time of small files

    context = multiprocessing.get_context("fork")
    fd = _output_fd(stdout)
    if fd >= 0:
        stdout.flush()  # before the fork: the workers' writes come after what is buffered
        _TURN = Turn(fd, context.RawValue("q", 0), context.Lock())
    lenient_decoder = None
    try:
        with context.Pool(workers or os.cpu_count() or 2) as pool:
            for (_, start, end, _, index), result in zip(tasks, pool.imap(_work, tasks), strict=True):
                task = (path, start, end, number)
                number += result.newlines
                if result.written:
                    if on_block is not None:
                        on_block(end - start)
                    continue
                # An error ends the run here: the turn is not passed on, and later blocks never print.
                lenient_decoder = _write_block(
                    task, result, job, lenient_decoder, stdout, stderr, warn_unknown
                )
                if _TURN is not None:
                    stdout.flush()
                    _TURN.pass_on(index)
                if on_block is not None:
                    on_block(end - start)
    finally:
        _JOB = None
        _TURN = None


def _write_block(task, result, job, decoder, stdout, stderr, warn_unknown):  # noqa: ANN001, ANN202
    """Write a block its worker did not write (a warning or an early stop); returns the lenient
    decoder (``decoder``, made on first use)."""
    if result.err:
        # Warnings name line numbers the worker did not know: print this block again.
        return _finish_leniently(task, 0, job, decoder, stdout, stderr, warn_unknown)
    stdout.write(result.out)
    if result.reason == "too-long":
        raise InputError(TOKEN_TOO_LONG)
    if result.reason == "unknown-field":
        return _finish_leniently(task, result.stopped_at, job, decoder, stdout, stderr, warn_unknown)
    return decoder


def _finish_leniently(task, index, job, decoder, stdout, stderr, warn_unknown):  # noqa: ANN001, ANN202
    """Process the rest of a block in the parent, with the run's one unknown-field warning."""
    path, start, end, first_line_number = task
    with open(path, "rb") as stream:
        stream.seek(start)
        lines, too_long, _ = _block_lines(stream.read(end - start))
    if decoder is None:
        decoder = job.make_decoder(False, warn_unknown)
    out, err = io.BytesIO(), io.BytesIO()
    printer = job.make_printer(out, err)
    job.process(lines[index:], first_line_number + index, decoder, printer, err)
    printer.close()
    stdout.write(out.getvalue())
    if err.getvalue():
        stdout.flush()
        stderr.write(err.getvalue())
    if too_long:
        raise InputError(TOKEN_TOO_LONG)
    return decoder
