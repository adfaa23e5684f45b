"""Parse the markdown tables of shared/spec/hubble-api.md into plain data.

The spec is the wire contract of the public Hubble API. This module reads its
message, enum and service tables (sections 2, 3 and 4) so tests can compare
them with the descriptors of the generated ``hubblepy.api`` modules.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def shared_dir() -> Path:
    """Return the shared/ folder: $HUBBLEPY_SHARED or <repo>/../shared."""
    env = os.environ.get("HUBBLEPY_SHARED")
    return Path(env) if env else REPO_ROOT.parent / "shared"


def spec_path() -> Path:
    return shared_dir() / "spec" / "hubble-api.md"


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


_MSG_SECTION = re.compile(
    r"^### 3\.\d+ Messages of `(?P<file>[^`]+)` \(package `(?P<pkg>[^`]+)`\): "
    r"(?P<msgs>\d+) messages, (?P<fields>\d+) fields"
)
_ENUM_SECTION = re.compile(
    r"^### 4\.\d+ Enums of `(?P<file>[^`]+)` \(package `(?P<pkg>[^`]+)`\): "
    r"(?P<enums>\d+) enums, (?P<values>\d+) values"
)
_MSG_HEAD = re.compile(r"^#### message `(?P<name>[^`]+)`(?P<rest>.*)$")
_ENUM_HEAD = re.compile(r"^#### enum `(?P<name>[^`]+)`")
_RESERVED = re.compile(r"^- Reserved (?:field )?numbers \(never reuse\): (?P<list>.+)$")
_ONEOFS = re.compile(r"^- oneof groups: (?P<list>.+)$")


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _unquote(cell: str) -> str:
    return cell.strip().strip("`")


def _parse_reserved(text: str) -> list[tuple[int, int]]:
    ranges = []
    for part in text.split(","):
        part = part.strip()
        if " to " in part:
            lo, hi = part.split(" to ")
            ranges.append((int(lo), int(hi)))
        else:
            ranges.append((int(part), int(part)))
    return ranges


def parse_spec(path: Path | None = None) -> Spec:
    """Parse the spec file; raise ValueError on a row that does not fit."""
    lines = (path or spec_path()).read_text(encoding="utf-8").splitlines()
    messages: dict[str, SpecMessage] = {}
    enums: dict[str, SpecEnum] = {}
    rpcs: list[SpecRpc] = []
    counts: dict[str, SpecFileCounts] = {}
    current_file = ""
    current_msg: SpecMessage | None = None
    current_enum: SpecEnum | None = None
    in_services = False
    want_description = False

    for raw in lines:
        line = raw.rstrip()
        if line.startswith("## "):
            in_services = line.startswith("## 2.")
            current_msg = current_enum = None
            continue
        if m := _MSG_SECTION.match(line):
            current_file = m["file"]
            c = counts.setdefault(current_file, SpecFileCounts(current_file, m["pkg"]))
            c.messages, c.fields = int(m["msgs"]), int(m["fields"])
            current_msg = current_enum = None
            continue
        if m := _ENUM_SECTION.match(line):
            current_file = m["file"]
            c = counts.setdefault(current_file, SpecFileCounts(current_file, m["pkg"]))
            c.enums, c.values = int(m["enums"]), int(m["values"])
            current_msg = current_enum = None
            continue
        if m := _MSG_HEAD.match(line):
            current_enum = None
            current_msg = SpecMessage(m["name"], current_file, deprecated="deprecated" in m["rest"])
            if current_msg.full_name in messages:
                raise ValueError(f"duplicate message {current_msg.full_name}")
            messages[current_msg.full_name] = current_msg
            want_description = True
            continue
        if m := _ENUM_HEAD.match(line):
            current_msg = None
            current_enum = SpecEnum(m["name"], current_file)
            if current_enum.full_name in enums:
                raise ValueError(f"duplicate enum {current_enum.full_name}")
            enums[current_enum.full_name] = current_enum
            want_description = True
            continue
        if line.startswith("#"):
            current_msg = current_enum = None
            continue
        target = current_msg or current_enum
        if target is not None:
            if want_description and line and not line.startswith(("-", "|")):
                target.description = line
                want_description = False
                continue
            if m := _RESERVED.match(line):
                target.reserved = _parse_reserved(m["list"])
                continue
            if current_msg is not None and (m := _ONEOFS.match(line)):
                current_msg.oneofs = re.findall(r"`([^`]+)`", m["list"])
                continue
        if not line.startswith("|") or line.startswith("|---"):
            continue
        cells = _cells(line)
        if in_services:
            if cells[0] == "service (full name)":
                continue
            if len(cells) != 6:
                raise ValueError(f"bad RPC row: {line}")
            streaming = cells[4]
            if streaming not in ("unary", "server-streaming"):
                raise ValueError(f"unknown streaming kind in: {line}")
            rpcs.append(
                SpecRpc(
                    service=_unquote(cells[0]),
                    method=_unquote(cells[1]),
                    request=_unquote(cells[2]),
                    response=_unquote(cells[3]),
                    server_streaming=streaming == "server-streaming",
                    path=_unquote(cells[5]),
                )
            )
        elif current_msg is not None:
            if cells[0] == "#":
                continue
            if len(cells) != 6:
                raise ValueError(f"bad field row in {current_msg.full_name}: {line}")
            label_cell = cells[3]
            oneof = None
            if label_cell.startswith("oneof"):
                oneof = _unquote(label_cell[len("oneof") :])
                label = "oneof"
            elif label_cell in ("", "repeated"):
                label = label_cell
            else:
                raise ValueError(f"unknown label {label_cell!r} in {current_msg.full_name}")
            current_msg.fields.append(
                SpecField(
                    number=int(cells[0]),
                    name=_unquote(cells[1]),
                    type_name=_unquote(cells[2]),
                    label=label,
                    oneof=oneof,
                    json_name=_unquote(cells[4]),
                    deprecated="**deprecated**" in cells[5],
                )
            )
        elif current_enum is not None:
            if cells[0] == "value name":
                continue
            if len(cells) != 3:
                raise ValueError(f"bad enum row in {current_enum.full_name}: {line}")
            current_enum.values.append(
                SpecEnumValue(_unquote(cells[0]), int(cells[1]), "**deprecated**" in cells[2])
            )
    return Spec(messages, enums, rpcs, counts)
