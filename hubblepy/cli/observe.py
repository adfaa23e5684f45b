"""`hubble observe`: flags -> filters -> records -> printer, for a flows file or a live server.

The file path (``--input-file FILE|-``) is the hot loop of the CLI. Most lines of a real file match
a checked template (:mod:`hubblepy.codec.templates`: the same text as an earlier canonical line
around the time, UUID, ports, L7 latency, HTTP code, method and URL, and summary): such a line is
valid and canonical without decoding; JSON output writes it back as is and compact output fills the
template's format (without filters, straight from the line's bytes: :mod:`hubblepy.cli.compact_lines`).
Other lines cost one JSON decode (orjson plus a canonical check). Every line is decoded or matched, even
one the byte-level prefilter rejects, because upstream warns about bad lines before filtering; a
record is parsed for the time window and the compiled predicate only when the line can match.
"""

from __future__ import annotations

import collections
import functools
import gc
import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import BinaryIO, TextIO, cast

import orjson

from hubblepy.cli import parallel_input
from hubblepy.cli.file_input import InputError, iter_line_batches, open_input
from hubblepy.cli.jqrun import jq_results
from hubblepy.cli.observe_args import (
    HelpRequested,
    ObserveArgs,
    UsageError,
    parse_observe_args,
    render_raw_filters,
)
from hubblepy.cli.slog import slog_line, warn
from hubblepy.codec import DecodeError, ResponseDecoder, encode_response
from hubblepy.codec.templates import Template, TemplateCache
from hubblepy.codec.timestamps import canonical_ns
from hubblepy.filters import FilterError
from hubblepy.printer import Printer
from hubblepy.printer.options import observe_print_options as print_options

_loads = orjson.loads


class ObserveError(Exception):
    """An error that ends `hubble observe` with one line on stderr and exit status 1."""


def main(argv: list[str], env: Mapping[str, str] | None = None) -> int:
    """Run `hubble observe` with ``argv`` (the words after ``observe``); returns the exit status."""
    env = os.environ if env is None else env
    stdout = sys.stdout.buffer
    stderr = sys.stderr
    try:
        return run(argv, env, sys.stdin.buffer, stdout, stderr)
    except (UsageError, FilterError, ObserveError, InputError) as exc:
        stdout.flush()
        stderr.write(f"{exc}\n")
        return 1
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): end as a Go program does, killed by SIGPIPE
        # (the shell reports status 141).
        _silence_stdout()
        return _die_of_sigpipe()


def _die_of_sigpipe() -> int:
    """Terminate by SIGPIPE with its default action; 141 only if the signal could not end us."""
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGPIPE)
    return 128 + signal.SIGPIPE


def _silence_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def run(
    argv: list[str],
    env: Mapping[str, str],
    stdin: BinaryIO,
    stdout: BinaryIO,
    stderr: TextIO,
) -> int:
    """Parse, validate, then read and print. Raises the errors :func:`main` turns into one line."""
    try:
        args = parse_observe_args(argv, env)
    except HelpRequested:
        from hubblepy.cli.observe_help import observe_help

        stdout.write(observe_help().encode())
        return 0
    if args.print_raw_filters:
        stdout.write(render_raw_filters(args.allow, args.deny).encode())
        return 0
    if args.debug and args.config_file_used:
        stderr.write(slog_line("DEBUG", "Using config file", config_file=args.config_file_used))
    predicate = _compile_filters(args.allow, args.deny)
    if args.jq is not None and "output" in args.changed and args.output != "json":
        raise ObserveError(f"--jq needs JSON output: drop -o {args.output_flag} or use -o json")
    jq_program = _compile_jq(args.jq) if args.jq is not None else None
    if args.debug:
        stderr.write(slog_line("DEBUG", "Sending GetFlows request", request=_request_summary(args)))
    if args.input_file is None:
        from hubblepy.cli.observe_live import run_live_observe

        return run_live_observe(args, stdout=stdout, stderr=stderr, jq_program=jq_program)

    if args.connection.port_forward:
        raise ObserveError("cannot use --input-file and --auto-port-forward together")
    # The reader makes no reference cycles, and the cycle collector's passes over the decoded
    # records and the template caches cost a sixth of the run: it is off while the file is read.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _observe_file(args, stdin, stdout, stderr, predicate, jq_program)
    finally:
        if collecting:
            gc.enable()


def _observe_file(
    args: ObserveArgs,
    stdin: BinaryIO,
    stdout: BinaryIO,
    stderr: TextIO,
    predicate: Callable[[dict], bool],
    jq_program,  # noqa: ANN001 - jq's program type is not exported
) -> int:
    """Read, filter and print the records of ``--input-file``."""
    assert args.input_file is not None
    stream = open_input(args.input_file, stdin)
    args.check_file_last_limit()
    options = print_options(args, stdout)
    err_bin = cast(BinaryIO, stderr.buffer if hasattr(stderr, "buffer") else stderr)
    prefilter = _compile_prefilter(args.allow, args.deny)
    templates = TemplateCache()
    scan = functools.partial(
        _matching_in_batch,
        predicate=predicate,
        prefilter=prefilter,
        since_ns=args.since_ns,
        until_ns=args.until_ns,
        templates=templates,
    )
    sequential_only = bool(args.file_first or args.file_last or jq_program is not None or args.debug)
    print_lines: Callable[..., None] = functools.partial(_print_block_lines, scan)
    if (
        options.output == "compact"
        and jq_program is None
        and not (args.file_first or args.file_last)
        and predicate is _match_all
        and prefilter is None
        and args.since_ns is None
        and args.until_ns is None
    ):
        from hubblepy.cli.compact_lines import CompactLines

        print_lines = CompactLines(templates, _warn_bad_line).print_lines
    bar = _progress_bar(args.input_file, stdout, stderr) if stream is not stdin else None
    if stream is not stdin and parallel_input.usable(args.input_file, args.output, sequential_only):
        stream.close()
        job = parallel_input.LineJob(
            make_decoder=lambda lenient, callback: ResponseDecoder(on_unknown_field=callback),
            process=functools.partial(_print_block, print_lines),
            make_printer=lambda out, err: Printer(options, out, err),
        )
        try:
            parallel_input.run(
                args.input_file,
                job,
                stdout,
                err_bin,
                lambda text: _warn_unknown_field(stderr, text),
                on_block=bar.advance if bar is not None else None,
            )
        finally:
            if bar is not None:
                bar.close()
        stdout.flush()
        return 0
    printer = Printer(options, stdout, err_bin)
    source: BinaryIO = stream
    if bar is not None:
        from hubblepy.cli.progress import CountingReader

        source = cast(BinaryIO, CountingReader(stream, bar))
    try:
        decoder = ResponseDecoder(on_unknown_field=lambda text: _warn_unknown_field(stderr, text))
        if jq_program is None and not (args.file_first or args.file_last):
            line_number = 1
            for batch in iter_line_batches(source):
                print_lines(batch, line_number, decoder, printer, stderr.write)
                line_number += len(batch)
            return 0
        records = _matching_records(iter_line_batches(source), decoder, scan, stderr.write)
        if jq_program is not None:
            failures = _print_jq(records, args, jq_program, stdout, stderr)
            if failures:
                stdout.flush()
                stderr.write(f"the jq program failed on {failures} record(s)\n")
                return 1
        else:
            _print_records(records, args, printer)
    finally:
        if bar is not None:
            bar.close()
        printer.close()
        if stream is not stdin:
            stream.close()
        stdout.flush()
    return 0


def _progress_bar(path: str, stdout: BinaryIO, stderr: TextIO):  # noqa: ANN202 - progress.Bar | None
    """A progress bar on stderr for a long read when stderr is a terminal (see progress.wanted)."""
    from hubblepy.cli import progress

    size = progress.wanted(path, stdout, stderr)
    return progress.Bar(path, size, stderr) if size else None


def _match_all(record: dict) -> bool:
    return True


def _compile_filters(allow: list[dict], deny: list[dict]) -> Callable[[dict], bool]:
    """The record predicate; the filter compiler is only loaded when there are filters."""
    if not allow and not deny:
        return _match_all
    from hubblepy.filters import compile_flow_filters

    return compile_flow_filters(allow, deny)


def _compile_prefilter(allow: list[dict], deny: list[dict]) -> Callable[[bytes], bool] | None:
    if not allow:
        return None
    from hubblepy.filters import compile_byte_prefilter

    return compile_byte_prefilter(allow, deny)


def _compile_jq(expression: str):  # noqa: ANN202 - jq's program type is not exported
    import jq

    try:
        return jq.compile(expression)
    except ValueError as exc:
        message = str(exc).splitlines()[0] if str(exc) else "invalid program"
        raise ObserveError(f"invalid --jq expression: {message}") from None


def _warn_unknown_field(stderr: TextIO, text: str) -> None:
    warn(stderr, "unknown field detected, upgrade the Hubble CLI to get rid of this warning", error=text)


def _request_summary(args: ObserveArgs) -> str:
    parts = []
    if args.allow:
        parts.append(f"whitelist:{len(args.allow)}")
    if args.deny:
        parts.append(f"blacklist:{len(args.deny)}")
    if args.follow:
        parts.append("follow:true")
    return " ".join(parts)


# (record, its canonical line or None, (template, hole values) when the line matched a checked
# template): the record is None when nothing needed it decoded (it is orjson.loads of the line).
Record = tuple["dict | None", "bytes | None", "tuple[Template, list[bytes]] | None"]


def _matching_records(
    batches: Iterable[list[bytes]],
    decoder: ResponseDecoder,
    scan: Callable[..., Iterator[Record]],
    err_write: Callable[[str], object],
) -> Iterator[Record]:
    """Every matching record of the input, in order: ``(record, raw canonical line or None)``."""
    line_number = 1
    for batch in batches:
        yield from scan(batch, line_number, decoder, err_write)
        line_number += len(batch)


def _matching_in_batch(
    lines: list[bytes],
    first_line_number: int,
    decoder: ResponseDecoder,
    err_write: Callable[[str], object],
    *,
    predicate: Callable[[dict], bool],
    prefilter: Callable[[bytes], bool] | None,
    since_ns: int | None,
    until_ns: int | None,
    templates: TemplateCache,
) -> Iterator[Record]:
    """Decode, window and filter ``lines``; warn about bad ones (numbered from ``first_line_number``).

    Every line is decoded or proven valid, as upstream unmarshals every line before its filters:
    a line the byte prefilter rejects still gets its warning when it is malformed. A line that
    matches a checked template is valid and canonical without decoding; it is parsed only when
    the time window or the filters need its fields.
    """
    decode = decoder.decode
    match_template = templates.match
    learn = templates.learn
    windowed = since_ns is not None or until_ns is not None
    filtered = predicate is not _match_all
    for index, line in enumerate(lines):
        templated = match_template(line)
        if templated is not None:
            if prefilter is not None and not prefilter(line):
                continue
            record = None
            if windowed or filtered:
                record = _loads(line)
                if windowed:
                    stamp = canonical_ns(record.get("time"))
                    if since_ns is not None and stamp < since_ns:
                        continue
                    if until_ns is not None and stamp > until_ns:
                        continue
                if not predicate(record):
                    continue
            yield record, line, templated
            continue
        try:
            record = decode(line)
        except DecodeError as exc:
            _warn_bad_line(err_write, line, first_line_number + index, decoder, exc)
            continue
        except parallel_input.StopBlock as stop:
            stop.index = index
            raise
        canonical = decoder.last_was_canonical
        if canonical:
            learn(line, record)
        if prefilter is not None and not prefilter(line):
            continue
        if windowed:
            stamp = canonical_ns(record.get("time"))
            if since_ns is not None and stamp < since_ns:
                continue
            if until_ns is not None and stamp > until_ns:
                continue
        if predicate(record):
            yield record, (line if canonical else None), None


def _write(printer: Printer, item: Record) -> None:
    printer.write_record(*item)


def _print_block_lines(
    scan: Callable[..., Iterator[Record]],
    lines: list[bytes],
    first_line_number: int,
    decoder: ResponseDecoder,
    printer: Printer,
    err_write: Callable[[str], object],
) -> None:
    """Print every matching record of ``lines`` (numbered from ``first_line_number``)."""
    write_record = printer.write_record
    for record, raw, templated in scan(lines, first_line_number, decoder, err_write):
        write_record(record, raw, templated)


def _print_block(
    print_lines: Callable[..., None],
    lines: list[bytes],
    first_line_number: int,
    decoder: ResponseDecoder,
    printer: Printer,
    err: BinaryIO,
) -> None:
    """Print every matching record of a block (used by the parallel reader's workers)."""

    def err_write(text: str) -> None:
        printer.flush()
        err.write(text.encode())

    print_lines(lines, first_line_number, decoder, printer, err_write)


def _warn_bad_line(
    err_write: Callable[[str], object],
    line: bytes,
    line_number: int,
    decoder: ResponseDecoder,
    exc: DecodeError | None = None,
) -> None:
    if exc is None:
        try:
            decoder.decode(line)
        except DecodeError as found:
            exc = found
        else:  # the quick check was too strict: nothing to report
            return
    err_write(
        slog_line(
            "WARN",
            "Failed to unmarshal json to flow",
            error=exc.message,
            line=line.decode("utf-8", "surrogateescape"),
            line_number=line_number,
        )
    )


def _print_records(records: Iterable[Record], args: ObserveArgs, printer: Printer) -> None:
    """Print the first ``--first`` or the last ``--last`` records (other runs print block by block)."""
    if args.file_first:
        remaining = args.file_first
        for item in records:
            _write(printer, item)
            remaining -= 1
            if not remaining:
                break
    else:
        for item in collections.deque(records, maxlen=args.file_last):
            _write(printer, item)


def _print_jq(
    records: Iterable[Record],
    args: ObserveArgs,
    program,  # noqa: ANN001 - jq's program type is not exported
    stdout: BinaryIO,
    stderr: TextIO,
) -> int:
    """Run the ``--jq`` program on each record's JSON and print its results; returns the failures."""
    if args.file_first:
        records = _take(records, args.file_first)
    elif args.file_last:
        records = collections.deque(records, maxlen=args.file_last)
    chunk: list[bytes] = []
    failures = 0
    for record, raw, _ in records:
        text = (raw if raw is not None else encode_response(cast(dict, record))).decode()
        lines, error = jq_results(program, text)
        chunk.extend(lines)
        if error is not None:
            failures += 1
            stdout.write(b"".join(chunk))
            chunk.clear()
            stdout.flush()
            warn(stderr, "jq program failed on a record", error=error)
            continue
        if len(chunk) >= 256:
            stdout.write(b"".join(chunk))
            chunk.clear()
    stdout.write(b"".join(chunk))
    return failures


def _take(records: Iterable[Record], count: int) -> Iterable[Record]:
    for index, item in enumerate(records):
        yield item
        if index + 1 >= count:
            return
