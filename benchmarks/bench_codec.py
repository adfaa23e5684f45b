"""Micro-benchmark of the codec: ``python benchmarks/bench_codec.py [FILE.jsonl] [--lines N]``.

Reports CPU microseconds per line (best of several rounds, ``time.process_time``)
for: orjson.loads alone (the floor), decode of canonical lines, decode of the same
lines re-spaced (non-canonical, slow path), encode, message_to_dict and
dict_to_message; then dict -> GetFlowsResponse protobuf bytes (what the node sends upstream clients)
field by field and with :mod:`hubblepy.codec.fastwire`, for the file's records (fresh dicts, as a
replay makes) and for flows from the node's parser (which share their endpoint and other
sub-dicts). FILE defaults to the recorded upstream flows (tests/fixtures/flows.jsonl).
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
    from hubblepy.codec.fastwire import WireEncoder

    def field_by_field(r: dict) -> bytes:
        return dict_to_message(r, observer_pb2.GetFlowsResponse, lenient=True).SerializeToString()

    def first_time(fn: Callable[[object], object], make: Callable[[], list]) -> float:
        """Per item, every item new (as the node encodes each ring entry once)."""
        best = float("inf")
        for _ in range(args.rounds):
            items = make()
            start = time.process_time()
            for item in items:
                fn(item)
            best = min(best, time.process_time() - start)
        return best / len(items) * 1e6

    def parsed() -> list[dict]:
        return _parser_responses(len(spaced))

    def fresh() -> list[dict]:
        return [orjson.loads(line) for line in lines[: len(spaced)]]

    fast = WireEncoder(observer_pb2.GetFlowsResponse)
    results["wire, field by field (file)"] = first_time(field_by_field, fresh)
    results["wire, fastwire (file)"] = first_time(fast.encode, fresh)
    results["wire, field by field (parser)"] = first_time(field_by_field, parsed)
    results["wire, fastwire (parser)"] = first_time(fast.encode, parsed)
    size = sum(map(len, lines)) / len(lines)
    print(f"{len(lines)} lines, {size:.0f} bytes average")
    for name, micros in results.items():
        print(f"{name:32s} {micros:8.2f} us/line  ({1e6 / micros:10,.0f} lines/s)")


def _parser_responses(count: int) -> list[dict]:
    """GetFlowsResponse dicts of trace, drop and policy-verdict flows decoded by the node's parser."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_parser import _resolver, build_samples

    from hubblepy.parser import Parser

    parser = Parser(_resolver(16), "bench-node")
    out: list[dict] = []
    for kind in ("trace", "drop", "verdict"):
        flows = parser.decode_batch(build_samples(kind, max(1, count // 3)), time.time_ns())
        out += [{"flow": f, "node_name": "bench-node", "time": f["time"]} for f in flows]
    return out


if __name__ == "__main__":
    main()
