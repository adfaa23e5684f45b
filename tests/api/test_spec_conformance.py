"""Check the generated hubblepy.api descriptors against every table of the API spec.

The field tables (tests/fixtures/hubble-api-fields.json) list each file's imports, message field,
enum value, reserved range and RPC of the upstream Hubble API. These tests read those
tables and compare them, one by one and in declaration order, with the
FileDescriptorProto that the generated modules register (the same bytes that
gRPC server reflection sends to clients).
"""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

import pytest
from google.protobuf import descriptor_pb2
from spec_tables import Spec, SpecEnum, SpecMessage, load_spec

from hubblepy.api.flow import flow_pb2
from hubblepy.api.observer import observer_pb2
from hubblepy.api.peer import peer_pb2
from hubblepy.api.relay import relay_pb2

FDP = descriptor_pb2.FieldDescriptorProto
MODULES: dict[str, ModuleType] = {
    "flow/flow.proto": flow_pb2,
    "observer/observer.proto": observer_pb2,
    "peer/peer.proto": peer_pb2,
    "relay/relay.proto": relay_pb2,
}
SCALAR_TYPES = {
    FDP.TYPE_DOUBLE: "double",
    FDP.TYPE_FLOAT: "float",
    FDP.TYPE_INT64: "int64",
    FDP.TYPE_UINT64: "uint64",
    FDP.TYPE_INT32: "int32",
    FDP.TYPE_FIXED64: "fixed64",
    FDP.TYPE_FIXED32: "fixed32",
    FDP.TYPE_BOOL: "bool",
    FDP.TYPE_STRING: "string",
    FDP.TYPE_BYTES: "bytes",
    FDP.TYPE_UINT32: "uint32",
    FDP.TYPE_SFIXED32: "sfixed32",
    FDP.TYPE_SFIXED64: "sfixed64",
    FDP.TYPE_SINT32: "sint32",
    FDP.TYPE_SINT64: "sint64",
}

SPEC: Spec = load_spec()


def _file_proto(file_name: str) -> descriptor_pb2.FileDescriptorProto:
    return descriptor_pb2.FileDescriptorProto.FromString(MODULES[file_name].DESCRIPTOR.serialized_pb)


def _walk_messages(
    prefix: str, messages: Iterator[descriptor_pb2.DescriptorProto]
) -> Iterator[tuple[str, descriptor_pb2.DescriptorProto]]:
    for msg in messages:
        full = f"{prefix}.{msg.name}"
        yield full, msg
        yield from _walk_messages(full, iter(msg.nested_type))


def _walk_enums(
    fp: descriptor_pb2.FileDescriptorProto,
) -> Iterator[tuple[str, descriptor_pb2.EnumDescriptorProto]]:
    for enum in fp.enum_type:
        yield f"{fp.package}.{enum.name}", enum
    for full, msg in _walk_messages(fp.package, iter(fp.message_type)):
        for enum in msg.enum_type:
            yield f"{full}.{enum.name}", enum


FILE_PROTOS = {name: _file_proto(name) for name in MODULES}
DESC_MESSAGES = {
    full: (name, msg)
    for name, fp in FILE_PROTOS.items()
    for full, msg in _walk_messages(fp.package, iter(fp.message_type))
}
DESC_ENUMS = {full: (name, enum) for name, fp in FILE_PROTOS.items() for full, enum in _walk_enums(fp)}


def _field_type(field: descriptor_pb2.FieldDescriptorProto) -> str:
    if field.type in (FDP.TYPE_MESSAGE, FDP.TYPE_ENUM):
        return field.type_name.lstrip(".")
    return SCALAR_TYPES[field.type]


def _field_row(
    full_name: str, msg: descriptor_pb2.DescriptorProto, field: descriptor_pb2.FieldDescriptorProto
) -> tuple:
    # The serialized FileDescriptorProto omits json_name; the runtime descriptor computes it.
    json_name = flow_pb2.DESCRIPTOR.pool.FindMessageTypeByName(full_name).fields_by_name[field.name].json_name
    if field.HasField("oneof_index"):
        label, oneof = "oneof", msg.oneof_decl[field.oneof_index].name
    else:
        label, oneof = ("repeated" if field.label == FDP.LABEL_REPEATED else ""), None
    return (
        field.number,
        field.name,
        _field_type(field),
        label,
        oneof,
        json_name,
        field.options.deprecated,
    )


def _spec_row(spec_msg: SpecMessage, index: int) -> tuple:
    f = spec_msg.fields[index]
    return (f.number, f.name, f.type_name, f.label, f.oneof, f.json_name, f.deprecated)


def test_spec_parsed_counts_match_headings() -> None:
    """Guards the data file: the tables hold as many rows as the per-file counts say."""
    assert set(SPEC.counts) == set(MODULES)
    for file_name, counts in SPEC.counts.items():
        messages = [m for m in SPEC.messages.values() if m.file == file_name]
        enums = [e for e in SPEC.enums.values() if e.file == file_name]
        assert len(messages) == counts.messages, file_name
        assert sum(len(m.fields) for m in messages) == counts.fields, file_name
        assert len(enums) == counts.enums, file_name
        assert sum(len(e.values) for e in enums) == counts.values, file_name
    assert SPEC.counts["flow/flow.proto"].messages == 45
    assert SPEC.counts["flow/flow.proto"].fields == 245


@pytest.mark.parametrize("file_name", sorted(MODULES))
def test_descriptor_counts_match_spec_headings(file_name: str) -> None:
    counts = SPEC.counts[file_name]
    msgs = [m for full, (f, m) in DESC_MESSAGES.items() if f == file_name]
    enums = [e for full, (f, e) in DESC_ENUMS.items() if f == file_name]
    assert FILE_PROTOS[file_name].package == counts.package
    assert len(msgs) == counts.messages
    assert sum(len(m.field) for m in msgs) == counts.fields
    assert len(enums) == counts.enums
    assert sum(len(e.value) for e in enums) == counts.values


@pytest.mark.parametrize("file_name", sorted(MODULES))
def test_same_message_and_enum_names_per_file(file_name: str) -> None:
    assert {k for k, (f, _) in DESC_MESSAGES.items() if f == file_name} == {
        m.full_name for m in SPEC.messages.values() if m.file == file_name
    }
    assert {k for k, (f, _) in DESC_ENUMS.items() if f == file_name} == {
        e.full_name for e in SPEC.enums.values() if e.file == file_name
    }


@pytest.mark.parametrize("full_name", list(SPEC.messages))
def test_message_matches_spec(full_name: str) -> None:
    spec_msg = SPEC.messages[full_name]
    file_name, msg = DESC_MESSAGES[full_name]
    assert file_name == spec_msg.file
    expected = [_spec_row(spec_msg, i) for i in range(len(spec_msg.fields))]
    actual = [_field_row(full_name, msg, f) for f in msg.field]
    # Whole list compared at once: this also checks declaration order.
    assert actual == expected
    assert [o.name for o in msg.oneof_decl] == spec_msg.oneofs
    assert not any(f.proto3_optional for f in msg.field), "no proto3 optional fields upstream"
    assert msg.options.deprecated == spec_msg.deprecated
    # DescriptorProto reserved ranges are end-exclusive; the spec's are inclusive.
    assert [(r.start, r.end - 1) for r in msg.reserved_range] == spec_msg.reserved
    assert list(msg.reserved_name) == []


@pytest.mark.parametrize("full_name", list(SPEC.enums))
def test_enum_matches_spec(full_name: str) -> None:
    spec_enum: SpecEnum = SPEC.enums[full_name]
    file_name, enum = DESC_ENUMS[full_name]
    assert file_name == spec_enum.file
    actual = [(v.name, v.number, v.options.deprecated) for v in enum.value]
    expected = [(v.name, v.number, v.deprecated) for v in spec_enum.values]
    assert actual == expected
    # EnumDescriptorProto reserved ranges are inclusive, like the spec's.
    assert [(r.start, r.end) for r in enum.reserved_range] == spec_enum.reserved
    assert not enum.options.allow_alias


def test_services_and_rpcs_match_spec() -> None:
    actual = []
    for file_name, fp in FILE_PROTOS.items():
        for service in fp.service:
            for method in service.method:
                full_service = f"{fp.package}.{service.name}"
                actual.append(
                    (
                        file_name,
                        full_service,
                        method.name,
                        method.input_type.lstrip("."),
                        method.output_type.lstrip("."),
                        method.server_streaming,
                        method.client_streaming,
                        f"/{full_service}/{method.name}",
                    )
                )
    expected = [
        (
            f"{r.service.split('.')[0]}/{r.service.split('.')[0]}.proto",
            r.service,
            r.method,
            r.request,
            r.response,
            r.server_streaming,
            False,
            r.path,
        )
        for r in SPEC.rpcs
    ]
    assert len(expected) == 7
    assert actual == expected


def test_files_packages_and_imports_match_spec() -> None:
    assert set(SPEC.counts) == set(MODULES)
    for file_name, fp in FILE_PROTOS.items():
        imports, public = SPEC.counts[file_name].imports, SPEC.counts[file_name].public_imports
        assert fp.name == file_name
        assert fp.syntax == "proto3"
        assert list(fp.dependency) == imports, file_name
        assert [fp.dependency[i] for i in fp.public_dependency] == public, file_name
        assert not fp.extension


def test_generated_modules_register_upstream_file_names() -> None:
    for file_name, module in MODULES.items():
        assert module.DESCRIPTOR.name == file_name
        assert module.DESCRIPTOR.pool.FindFileByName(file_name) is module.DESCRIPTOR
