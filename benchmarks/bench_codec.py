"""Micro-benchmark of the codec: ``python benchmarks/bench_codec.py [FILE.jsonl] [--lines N]``.

Reports CPU microseconds per line (best of several rounds, ``time.process_time``)
for: orjson.loads alone (the floor), decode of canonical lines, decode of the same
lines re-spaced (non-canonical, slow path), encode, message_to_dict and
dict_to_message. FILE defaults to the recorded upstream flows (tests/fixtures/flows.jsonl).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hubblepy.codec import ResponseDecoder, dict_to_message, encode_response, message_to_dict  # noqa: E402


def _per_item(fn: Callable[[object], object], items: Sequence, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for item in items:
            fn(item)
        best = min(best, time.process_time() - start)
    return best / len(items) * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path, nargs="?", default=REPO / "tests" / "fixtures" / "flows.jsonl")
    parser.add_argument("--lines", type=int, default=20000, help="lines per round (input repeated)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)

    from hubblepy.api.observer import observer_pb2

    base = args.file.read_bytes().splitlines()
    lines = (base * (args.lines // len(base) + 1))[: args.lines]
    spaced = [json.dumps(orjson.loads(line)).encode() for line in lines[: max(1, args.lines // 10)]]
    records = [orjson.loads(line) for line in lines]
    messages = [dict_to_message(r, observer_pb2.GetFlowsResponse) for r in records[: len(spaced)]]
    decoder = ResponseDecoder()
    results = {
        "orjson.loads (floor)": _per_item(orjson.loads, lines, args.rounds),
        "decode canonical": _per_item(decoder.decode, lines, args.rounds),
        "decode non-canonical (spaced)": _per_item(decoder.decode, spaced, args.rounds),
        "encode_response": _per_item(encode_response, records, args.rounds),
        "message_to_dict": _per_item(message_to_dict, messages, args.rounds),
        "dict_to_message": _per_item(
            lambda r: dict_to_message(r, observer_pb2.GetFlowsResponse), records[: len(spaced)], args.rounds
        ),
    }
    size = sum(map(len, lines)) / len(lines)
    print(f"{len(lines)} lines, {size:.0f} bytes average")
    for name, micros in results.items():
        print(f"{name:32s} {micros:8.2f} us/line  ({1e6 / micros:10,.0f} lines/s)")


if __name__ == "__main__":
    main()
