"""The canonical checker's two forms (a loop over per-field checks, then generated straight-line code
once a key tuple is common) give the same answer on every object, canonical or not."""

from __future__ import annotations

import orjson

from hubblepy.codec import schema
from hubblepy.codec.canonical import _COMPILE_AFTER, _Generator

BAD_VALUES = ("", 0, None, [], {}, "x", 7, -1, True, 2**40, ["a"], {"bogus": 1})


def _answer(check, value) -> bool:
    try:
        return bool(check(value))
    except (TypeError, AttributeError, ValueError):
        return False


def _variants(record: dict):
    """The record and copies with one flow member broken in a way canonical form may forbid."""
    yield record
    flow = record.get("flow")
    if not isinstance(flow, dict):
        return
    for key in flow:
        for bad in BAD_VALUES:
            yield {**record, "flow": {**flow, key: bad}}
    yield {**record, "flow": dict(reversed(list(flow.items())))}


def test_loop_and_generated_checkers_agree(fixtures_dir):
    info = schema.message_info("observer.GetFlowsResponse")
    lines = (fixtures_dir / "flows.jsonl").read_bytes().splitlines()
    for no_empty in (False, True):
        loop_gen, code_gen = _Generator(no_empty), _Generator(no_empty)
        compiled: dict[tuple, object] = {}
        for line in lines[:: max(1, len(lines) // 40)]:
            for value in _variants(orjson.loads(line)):
                keys = tuple(value)
                if keys not in compiled:
                    compiled[keys] = code_gen._plan(info, keys, value)
                loop = loop_gen._loop_plan(info, keys)
                assert _answer(loop, value) == _answer(compiled[keys], value), value
                # the flow itself, through each generator's dispatch (other children shapes too)
                flow = value.get("flow")
                flow_info = schema.message_info("flow.Flow")
                assert _answer(loop_gen.dispatcher(flow_info), flow) == _answer(
                    code_gen.dispatcher(flow_info), flow
                )


def test_a_common_key_tuple_gets_generated_code(fixtures_dir):
    info = schema.message_info("observer.GetFlowsResponse")
    generator = _Generator(False)
    check = generator.dispatcher(info)
    record = orjson.loads((fixtures_dir / "flows.jsonl").read_bytes().splitlines()[0])
    plans, _ = generator.plans(info)
    assert check(record)
    assert plans[tuple(record)].__code__.co_filename.endswith("canonical.py")  # the loop
    for _ in range(_COMPILE_AFTER):
        assert check(record)
    assert plans[tuple(record)].__code__.co_filename == "<string>"  # generated code
    assert check(record)
