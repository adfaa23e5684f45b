"""Turn a markdown description of the Hubble API into the JSON field tables the tests read.

The API conformance test (tests/api/test_spec_conformance.py) compares the generated
``hubblepy.api`` descriptors with a data file in the repository, tests/fixtures/hubble-api-fields.json.
That file was produced once by this script from a markdown fact sheet of upstream's ``.proto`` files
(Cilium's ``api/v1``: flow, observer, peer and relay), whose tables look like this:

- section 1: ``| `file` | `package` | imports, as written | ... |``
- section 2: ``| `service` | `Method` | `Request` | `Response` | unary or server-streaming | `/path` |``
- section 3: ``### 3.N Messages of `file` (package `pkg`): N messages, N fields``, then per message
  ``#### message `full.Name``` with a description line, ``- oneof groups: ...``,
  ``- Reserved numbers (never reuse): ...`` and rows ``| # | name | type | label | json_name | notes |``
- section 4: ``### 4.N Enums of ...: N enums, N values``, then ``#### enum `full.Name``` with rows
  ``| value name | number | notes |``

Usage: ``python scripts/api_fields_from_spec.py SPEC.md [OUT.json]`` (default output:
tests/fixtures/hubble-api-fields.json). A row that does not fit stops the script with a one-line error.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "hubble-api-fields.json"

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
_PROTO_FILE = re.compile(r"`[a-z]+/[a-z]+\.proto`")
_PUBLIC_IMPORT = re.compile(r'`import public "([^"]+)"`')


class SpecError(ValueError):
    """A line of the markdown that does not fit the expected table shape."""


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _unquote(cell: str) -> str:
    return cell.strip().strip("`")


def _parse_reserved(text: str) -> list[list[int]]:
    ranges = []
    for part in text.split(","):
        part = part.strip()
        lo, _, hi = part.partition(" to ")
        ranges.append([int(lo), int(hi or lo)])
    return ranges


def _files_section(lines: list[str]) -> dict[str, dict[str, Any]]:
    """Section 1: file -> package, imports in order and the public ones."""
    files: dict[str, dict[str, Any]] = {}
    in_section = False
    for line in lines:
        if line.startswith("## "):
            in_section = line.startswith("## 1.")
            continue
        cells = _cells(line)
        if not in_section or len(cells) < 3 or not _PROTO_FILE.fullmatch(cells[0]):
            continue
        imports: list[str] = []
        public: list[str] = []
        if cells[2] != "none":
            for item in cells[2].split(","):
                item = item.strip().strip("*")
                if m := _PUBLIC_IMPORT.fullmatch(item):
                    imports.append(m[1])
                    public.append(m[1])
                else:
                    imports.append(item.strip("`"))
        files[_unquote(cells[0])] = {
            "package": _unquote(cells[1]),
            "imports": imports,
            "public_imports": public,
        }
    return files


def _field_row(line: str, cells: list[str], message: str) -> dict[str, Any]:
    if len(cells) != 6:
        raise SpecError(f"bad field row in {message}: {line}")
    label = cells[3]
    oneof = None
    if label.startswith("oneof"):
        oneof, label = _unquote(label[len("oneof") :]), "oneof"
    elif label not in ("", "repeated"):
        raise SpecError(f"unknown label {label!r} in {message}")
    return {
        "number": int(cells[0]),
        "name": _unquote(cells[1]),
        "type": _unquote(cells[2]),
        "label": label,
        "oneof": oneof,
        "json_name": _unquote(cells[4]),
        "deprecated": "**deprecated**" in cells[5],
    }


def _rpc_row(line: str, cells: list[str]) -> dict[str, Any]:
    if len(cells) != 6:
        raise SpecError(f"bad RPC row: {line}")
    if cells[4] not in ("unary", "server-streaming"):
        raise SpecError(f"unknown streaming kind in: {line}")
    return {
        "service": _unquote(cells[0]),
        "method": _unquote(cells[1]),
        "request": _unquote(cells[2]),
        "response": _unquote(cells[3]),
        "server_streaming": cells[4] == "server-streaming",
        "path": _unquote(cells[5]),
    }


def parse(text: str) -> dict[str, Any]:
    """The whole contract as plain JSON-ready data; raise SpecError on a row that does not fit."""
    lines = [raw.rstrip() for raw in text.splitlines()]
    files = _files_section(lines)
    messages: dict[str, dict[str, Any]] = {}
    enums: dict[str, dict[str, Any]] = {}
    rpcs: list[dict[str, Any]] = []
    current_file = ""
    target: dict[str, Any] | None = None
    kind = ""  # "message" or "enum" while inside one
    in_services = False
    want_description = False

    for line in lines:
        if line.startswith("## "):
            in_services = line.startswith("## 2.")
            target = None
            continue
        if m := _MSG_SECTION.match(line):
            current_file = m["file"]
            counts = files.setdefault(
                current_file, {"package": m["pkg"], "imports": [], "public_imports": []}
            )
            counts["messages"], counts["fields"] = int(m["msgs"]), int(m["fields"])
            target = None
            continue
        if m := _ENUM_SECTION.match(line):
            current_file = m["file"]
            counts = files.setdefault(
                current_file, {"package": m["pkg"], "imports": [], "public_imports": []}
            )
            counts["enums"], counts["values"] = int(m["enums"]), int(m["values"])
            target = None
            continue
        if (m := _MSG_HEAD.match(line)) or (m := _ENUM_HEAD.match(line)):
            kind = "message" if line.startswith("#### message") else "enum"
            table = messages if kind == "message" else enums
            if m["name"] in table:
                raise SpecError(f"duplicate {kind} {m['name']}")
            target = {"full_name": m["name"], "file": current_file, "description": "", "reserved": []}
            if kind == "message":
                target.update(deprecated="deprecated" in m["rest"], oneofs=[], fields=[])
            else:
                target["values"] = []
            table[m["name"]] = target
            want_description = True
            continue
        if line.startswith("#"):
            target = None
            continue
        if target is not None:
            if want_description and line and not line.startswith(("-", "|")):
                target["description"] = line
                want_description = False
                continue
            if m := _RESERVED.match(line):
                target["reserved"] = _parse_reserved(m["list"])
                continue
            if kind == "message" and (m := _ONEOFS.match(line)):
                target["oneofs"] = re.findall(r"`([^`]+)`", m["list"])
                continue
        if not line.startswith("|") or line.startswith("|---"):
            continue
        cells = _cells(line)
        if in_services:
            if cells[0] != "service (full name)":
                rpcs.append(_rpc_row(line, cells))
        elif target is not None and kind == "message":
            if cells[0] != "#":
                target["fields"].append(_field_row(line, cells, target["full_name"]))
        elif target is not None and kind == "enum" and cells[0] != "value name":
            if len(cells) != 3:
                raise SpecError(f"bad enum row in {target['full_name']}: {line}")
            target["values"].append(
                {
                    "name": _unquote(cells[0]),
                    "number": int(cells[1]),
                    "deprecated": "**deprecated**" in cells[2],
                }
            )
    return {"files": files, "rpcs": rpcs, "messages": list(messages.values()), "enums": list(enums.values())}


def dump(data: dict[str, Any]) -> str:
    """Indented JSON with each field, enum value and RPC on one line, so diffs stay readable."""

    def flat(value: Any) -> bool:
        return not isinstance(value, dict | list)

    def encode(value: Any, indent: str) -> str:
        rows = value.values() if isinstance(value, dict) else value
        if flat(value) or all(flat(v) for v in rows) or all(isinstance(v, list) for v in rows):
            return json.dumps(value, ensure_ascii=False)
        inner = indent + "  "
        if isinstance(value, list):
            items = [inner + encode(v, inner) for v in value]
            return "[\n" + ",\n".join(items) + "\n" + indent + "]"
        items = [f"{inner}{json.dumps(k)}: {encode(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"

    return encode(data, "") + "\n"


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2):
        print("usage: api_fields_from_spec.py SPEC.md [OUT.json]", file=sys.stderr)
        return 2
    spec, out = Path(argv[0]), Path(argv[1]) if len(argv) == 2 else DEFAULT_OUT
    try:
        data = parse(spec.read_text(encoding="utf-8"))
    except (OSError, SpecError, ValueError) as exc:
        print(f"api_fields_from_spec: {spec}: {exc}", file=sys.stderr)
        return 1
    out.write_text(dump(data), encoding="utf-8")
    print(
        f"wrote {out}: {len(data['messages'])} messages, {len(data['enums'])} enums, {len(data['rpcs'])} RPCs"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
