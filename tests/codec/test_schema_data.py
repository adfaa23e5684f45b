"""hubblepy/codec/schema_data.py (the schema as plain data, read without protobuf) is up to date and
builds the same model as the descriptors do."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

from hubbletest import REPO_ROOT

from hubblepy.codec import schema, schema_data

# Describe a message model recursively (by names, so two processes can be compared).
DESCRIBE = """
import json, sys
from hubblepy.codec import schema
if sys.argv[1] == "descriptors":
    info = schema.message_info_for(schema.find_descriptor("observer.GetFlowsResponse"))
else:
    info = schema.message_info("observer.GetFlowsResponse")
    assert "google.protobuf" not in sys.modules, "the data path imported protobuf"
seen = {}
def field(f):
    return [f.name, f.json_name, f.number, f.index, f.kind, f.kind_name, f.repeated, f.presence, f.oneof,
            f.message.full_name if f.message else None,
            [f.enum.full_name, sorted(f.enum.numbers.items()), sorted(f.enum.names.items())] if f.enum else None,
            field(f.wrapped) if f.wrapped else None]
def walk(m):
    if m.full_name in seen:
        return
    seen[m.full_name] = None
    seen[m.full_name] = {
        "fields": [field(f) for f in m.fields],
        "by_key": sorted((k, f.name) for k, f in m.by_key.items()),
        "oneofs": sorted((k, [f.name for f in v]) for k, v in m.oneof_members.items()),
    }
    for f in m.fields:
        if f.message:
            walk(f.message)
walk(info)
print(json.dumps(seen, sort_keys=True))
"""


def _describe(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", DESCRIBE, mode], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_schema_data_is_up_to_date():
    spec = importlib.util.spec_from_file_location(
        "gen_schema_data", REPO_ROOT / "scripts" / "gen_schema_data.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.render() == (REPO_ROOT / "hubblepy" / "codec" / "schema_data.py").read_text(), (
        "run scripts/gen_schema_data.py"
    )
    messages, enums = schema.snapshot()
    assert (
        {k: [tuple(f) for f in v] for k, v in messages.items()},
        enums,
    ) == (schema_data.MESSAGES, schema_data.ENUMS)


def test_the_data_builds_the_same_model_as_the_descriptors():
    from_data = _describe("data")
    assert len(from_data) > 30
    assert from_data == _describe("descriptors")


def test_descriptors_are_attached_when_asked_for():
    info = schema.message_info("flow.Flow")
    described = schema.message_info_for(schema.find_descriptor("flow.Flow"))
    assert described is info and info.descriptor is not None
    assert all(f.descriptor is not None and f.descriptor.name == f.name for f in info.fields)
