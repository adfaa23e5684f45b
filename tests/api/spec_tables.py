"""The Hubble API contract as data: tests/fixtures/hubble-api-fields.json, loaded into dataclasses.

The file holds the wire contract of the public Hubble API (upstream's flow, observer, peer and relay
``.proto`` files): files with their imports, every message field, enum value, reserved range and RPC.
It was generated once by ``scripts/api_fields_from_spec.py``; tests compare it with the descriptors of
the generated ``hubblepy.api`` modules.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
SPEC_FILE = REPO_ROOT / "tests" / "fixtures" / "hubble-api-fields.json"


@dataclass
class SpecField:
    number: int
    name: str
    type_name: str
    label: str  # "", "repeated" or "oneof"
    oneof: str | None
    json_name: str
    deprecated: bool


@dataclass
class SpecMessage:
    full_name: str
    file: str
    deprecated: bool = False
    reserved: list[tuple[int, int]] = field(default_factory=list)  # inclusive ranges
    oneofs: list[str] = field(default_factory=list)
    fields: list[SpecField] = field(default_factory=list)
    description: str = ""


@dataclass
class SpecEnumValue:
    name: str
    number: int
    deprecated: bool


@dataclass
class SpecEnum:
    full_name: str
    file: str
    reserved: list[tuple[int, int]] = field(default_factory=list)
    values: list[SpecEnumValue] = field(default_factory=list)
    description: str = ""


@dataclass
class SpecRpc:
    service: str
    method: str
    request: str
    response: str
    server_streaming: bool
    path: str


@dataclass
class SpecFileCounts:
    file: str
    package: str
    imports: list[str] = field(default_factory=list)
    public_imports: list[str] = field(default_factory=list)
    messages: int = 0
    fields: int = 0
    enums: int = 0
    values: int = 0


@dataclass
class Spec:
    messages: dict[str, SpecMessage]
    enums: dict[str, SpecEnum]
    rpcs: list[SpecRpc]
    counts: dict[str, SpecFileCounts]


def _ranges(rows: list[list[int]]) -> list[tuple[int, int]]:
    return [(lo, hi) for lo, hi in rows]


def load_spec(path: Path = SPEC_FILE) -> Spec:
    """Read the field tables; a missing key or a wrong shape raises KeyError/TypeError/ValueError."""
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    counts = {name: SpecFileCounts(file=name, **info) for name, info in data["files"].items()}
    messages = {}
    for m in data["messages"]:
        fields = [
            SpecField(
                number=f["number"],
                name=f["name"],
                type_name=f["type"],
                label=f["label"],
                oneof=f["oneof"],
                json_name=f["json_name"],
                deprecated=f["deprecated"],
            )
            for f in m["fields"]
        ]
        for f in fields:
            if f.label not in ("", "repeated", "oneof"):
                raise ValueError(f"unknown label {f.label!r} in {m['full_name']}.{f.name}")
        messages[m["full_name"]] = SpecMessage(
            full_name=m["full_name"],
            file=m["file"],
            deprecated=m["deprecated"],
            reserved=_ranges(m["reserved"]),
            oneofs=list(m["oneofs"]),
            fields=fields,
            description=m["description"],
        )
    enums = {
        e["full_name"]: SpecEnum(
            full_name=e["full_name"],
            file=e["file"],
            reserved=_ranges(e["reserved"]),
            values=[SpecEnumValue(v["name"], v["number"], v["deprecated"]) for v in e["values"]],
            description=e["description"],
        )
        for e in data["enums"]
    }
    rpcs = [SpecRpc(**r) for r in data["rpcs"]]
    if len(messages) != len(data["messages"]) or len(enums) != len(data["enums"]):
        raise ValueError(f"{path}: duplicate message or enum name")
    return Spec(messages, enums, rpcs, counts)
