"""Upstream `hubble observe -o json` lines (tests/fixtures/flows.jsonl) must fit our descriptors.

Each line is real upstream output: it must parse strictly (no unknown field or
enum name), convert back to the same document, survive a binary round trip, and
its keys must already be in our .proto declaration order at every level.
"""

from __future__ import annotations

import json

import pytest
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from spec_tables import REPO_ROOT

from hubblepy.api.observer import observer_pb2

FLOWS = REPO_ROOT / "tests" / "fixtures" / "flows.jsonl"
# Well-known types are written as JSON scalars, so there is no key order to check inside them.
JSON_SCALAR_MESSAGES = {
    "google.protobuf.Timestamp",
    "google.protobuf.BoolValue",
    "google.protobuf.Int32Value",
    "google.protobuf.UInt32Value",
    "google.protobuf.FieldMask",
    "google.protobuf.Any",
}


def _lines() -> list[str]:
    return FLOWS.read_text(encoding="utf-8").splitlines()


def _assert_declaration_order(descriptor: Descriptor, doc: dict, where: str) -> None:
    indexes = []
    for key, value in doc.items():
        field = descriptor.fields_by_name.get(key)
        assert field is not None, f"{where}: unknown key {key!r}"
        indexes.append(field.index)
        if field.type != FieldDescriptor.TYPE_MESSAGE or field.message_type.full_name in JSON_SCALAR_MESSAGES:
            continue
        items = value if field.is_repeated else [value]
        for i, item in enumerate(items):
            _assert_declaration_order(field.message_type, item, f"{where}.{key}[{i}]")
    assert indexes == sorted(indexes), f"{where}: keys {list(doc)} are not in declaration order"


def test_fixture_has_all_lines() -> None:
    assert len(_lines()) == 230


@pytest.mark.parametrize("line_no", range(230))
def test_upstream_line_matches_our_descriptors(line_no: int) -> None:
    line = _lines()[line_no]
    doc = json.loads(line)
    message = json_format.Parse(line, observer_pb2.GetFlowsResponse())  # strict: unknown names fail

    assert json_format.MessageToDict(message, preserving_proto_field_name=True) == doc
    assert observer_pb2.GetFlowsResponse.FromString(message.SerializeToString()) == message
    _assert_declaration_order(observer_pb2.GetFlowsResponse.DESCRIPTOR, doc, f"line {line_no + 1}")
