"""The SHA-256 hash chain over the lines of ``flows.jsonl``.

Each line (without its ``\\n``) is hashed, ``L_i = SHA-256(line_i)``, and the chain runs
``C_0 = SHA-256("hubblepy-evidence-chain/1")``, ``C_i = SHA-256(C_{i-1} || L_i)`` (raw digests). The
head ``C_n`` and ``n`` go into the manifest; ``chain.txt`` keeps ``L_i`` and ``C_i`` per line so that
a verifier can name the first line that differs and say whether it was altered, removed, moved or
added. Changing any line, or their order or number, changes the head.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

CHAIN_SEED = hashlib.sha256(b"hubblepy-evidence-chain/1").digest()


@dataclass(frozen=True, slots=True)
class ChainRow:
    """One line's digest and the chain value after it (hex)."""

    line_sha256: str
    chain: str


class Chain:
    """The running chain: :meth:`add` each line in order; :attr:`head` is the hex of the last value."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = CHAIN_SEED

    def add(self, line: bytes) -> ChainRow:
        digest = hashlib.sha256(line).digest()
        self.value = hashlib.sha256(self.value + digest).digest()
        return ChainRow(digest.hex(), self.value.hex())

    @property
    def head(self) -> str:
        return self.value.hex()


def chain_rows(lines: Iterable[bytes]) -> Iterator[ChainRow]:
    """The chain rows of ``lines`` (each without its newline), in order."""
    chain = Chain()
    for line in lines:
        yield chain.add(line)


def chain_head(rows: list[ChainRow]) -> str:
    """The head of a chain (the seed's hex for an empty file)."""
    return rows[-1].chain if rows else CHAIN_SEED.hex()


NO_NEWLINE_MARK = b"\x00no-newline"  # appended to a last line without its newline: it counts as changed


def split_flow_lines(data: bytes) -> list[bytes]:
    """The lines of a ``flows.jsonl`` file: every line ends with ``\\n``; a last line without one
    still counts (so that deleting the final newline is seen as a change of the last line)."""
    if not data:
        return []
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    else:
        lines[-1] += NO_NEWLINE_MARK
    return lines


def iter_file_lines(path: Path, chunk_bytes: int = 1 << 20) -> Iterator[bytes]:
    """:func:`split_flow_lines` of a file, read in chunks (memory does not grow with the file)."""
    pending = b""
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_bytes):
            if pending:
                chunk = pending + chunk
            cut = chunk.rfind(b"\n")
            if cut < 0:
                pending = chunk
                continue
            pending = chunk[cut + 1 :]
            yield from chunk[:cut].split(b"\n")
    if pending:
        yield pending + NO_NEWLINE_MARK


def format_chain_file(rows: list[ChainRow]) -> bytes:
    return b"".join(f"{row.line_sha256} {row.chain}\n".encode() for row in rows)


class ChainFileError(ValueError):
    """``chain.txt`` is not in its format."""


def parse_chain_row(line: bytes, number: int) -> ChainRow:
    parts = line.rstrip(b"\n").decode("ascii", "replace").split(" ")
    if len(parts) != 2 or not all(len(p) == 64 and _is_hex(p) for p in parts):
        raise ChainFileError(f"chain.txt line {number} is not '<sha256> <sha256>'")
    return ChainRow(parts[0], parts[1])


def parse_chain_file(data: bytes) -> list[ChainRow]:
    return [parse_chain_row(line, number) for number, line in enumerate(data.splitlines(), 1)]


def _is_hex(text: str) -> bool:
    try:
        int(text, 16)
    except ValueError:
        return False
    return True


def first_difference(recorded: list[ChainRow], actual: list[ChainRow]) -> str | None:
    """A sentence naming the first line of ``flows.jsonl`` that is not what ``chain.txt`` recorded, or
    None when both agree. Line numbers count from 1."""
    recorded_lines = [r.line_sha256 for r in recorded]
    actual_lines = [r.line_sha256 for r in actual]
    for index in range(min(len(recorded), len(actual))):
        if recorded_lines[index] == actual_lines[index]:
            continue
        number = index + 1
        here = actual_lines[index]
        if (
            len(actual) > len(recorded)
            and actual_lines[index + 1 :][: len(recorded) - index]
            == recorded_lines[index:][: len(actual) - index - 1]
        ):
            return f"flows.jsonl line {number} was added (not in the recorded chain)"
        if len(actual) < len(recorded) and here in recorded_lines[index + 1 :]:
            gap = recorded_lines[index + 1 :].index(here) + 1
            removed = f"recorded line {number}" if gap == 1 else f"recorded lines {number}-{number + gap - 1}"
            return f"flows.jsonl line {number} is missing ({removed} removed)"
        if len(actual) == len(recorded) and here in recorded_lines and here != recorded_lines[index]:
            origin = recorded_lines.index(here) + 1
            return f"flows.jsonl line {number} was reordered (it was recorded as line {origin})"
        return f"flows.jsonl line {number} was altered"
    if len(actual) > len(recorded):
        return f"flows.jsonl line {len(recorded) + 1} was added (not in the recorded chain)"
    if len(actual) < len(recorded):
        return f"flows.jsonl line {len(actual) + 1} is missing (the file ends early)"
    for index, (want, got) in enumerate(zip(recorded, actual, strict=True)):
        if want.chain != got.chain:
            return f"chain.txt line {index + 1} was altered (chain value does not follow)"
    return None
