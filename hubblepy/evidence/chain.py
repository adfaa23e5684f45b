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

CHAIN_SEED = hashlib.sha256(b"hubblepy-evidence-chain/1").digest()


@dataclass(frozen=True, slots=True)
class ChainRow:
    """One line's digest and the chain value after it (hex)."""

    line_sha256: str
    chain: str


def chain_rows(lines: Iterable[bytes]) -> Iterator[ChainRow]:
    """The chain rows of ``lines`` (each without its newline), in order."""
    value = CHAIN_SEED
    for line in lines:
        digest = hashlib.sha256(line).digest()
        value = hashlib.sha256(value + digest).digest()
        yield ChainRow(digest.hex(), value.hex())


def chain_head(rows: list[ChainRow]) -> str:
    """The head of a chain (the seed's hex for an empty file)."""
    return rows[-1].chain if rows else CHAIN_SEED.hex()


def split_flow_lines(data: bytes) -> list[bytes]:
    """The lines of a ``flows.jsonl`` file: every line ends with ``\\n``; a last line without one
    still counts (so that deleting the final newline is seen as a change of the last line)."""
    if not data:
        return []
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    else:
        lines[-1] += b"\x00no-newline"  # a missing final newline alters the last line
    return lines


def format_chain_file(rows: list[ChainRow]) -> bytes:
    return b"".join(f"{row.line_sha256} {row.chain}\n".encode() for row in rows)


class ChainFileError(ValueError):
    """``chain.txt`` is not in its format."""


def parse_chain_file(data: bytes) -> list[ChainRow]:
    rows = []
    for number, line in enumerate(data.decode("ascii", "replace").splitlines(), 1):
        parts = line.split(" ")
        if len(parts) != 2 or not all(len(p) == 64 and _is_hex(p) for p in parts):
            raise ChainFileError(f"chain.txt line {number} is not '<sha256> <sha256>'")
        rows.append(ChainRow(parts[0], parts[1]))
    return rows


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
