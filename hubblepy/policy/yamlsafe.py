"""Bounded YAML loading for policy files: hostile input is refused before it can cost memory or time.

A policy file is text a user hands to ``hubble lab policy apply`` (and the lab node parses it), so
the loader treats it as untrusted:

* the text is at most :data:`MAX_TEXT_BYTES` (checked before parsing; files are read no further);
* anchors and aliases are refused (an "alias bomb" of a few hundred bytes otherwise expands to
  gigabytes once walked); Kubernetes manifests never need them;
* mappings and sequences nest at most :data:`MAX_DEPTH` deep, a scalar is at most
  :data:`MAX_SCALAR_CHARS` characters, a stream holds at most :data:`MAX_DOCUMENTS` documents;
* a key repeated in one mapping is an error (YAML 1.2 says keys are unique; PyYAML keeps the last);
* only the standard tags of the safe loader are built (no Python objects).

The checks run over the parser's event stream (libyaml when available) before anything is built,
so a refused file never reaches the constructor. Every error is one line with the 1-based line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MAX_TEXT_BYTES = 1 << 20  # 1 MiB: Kubernetes objects are at most ~1.5 MB; a policy file is far less
MAX_DEPTH = 32  # the deepest CiliumNetworkPolicy path is about 12 levels
MAX_SCALAR_CHARS = 16 * 1024
MAX_DOCUMENTS = 1000

_CLoader = getattr(yaml, "CSafeLoader", None)
_BASE: Any = _CLoader or yaml.SafeLoader


class YAMLInputError(ValueError):
    """A policy text that cannot be loaded safely: ``reason`` (one line) and ``line`` (1-based, 0: none)."""

    def __init__(self, reason: str, line: int = 0) -> None:
        super().__init__(f"line {line}: {reason}" if line else reason)
        self.reason = reason
        self.line = line


class _UniqueKeyLoader(_BASE):
    """The safe loader, with a repeated mapping key an error."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:
                raise YAMLInputError("a mapping key must be a scalar", key_node.start_mark.line + 1) from None
            if first is not None:
                raise YAMLInputError(
                    f"duplicate key {key!r} (first at line {first})", key_node.start_mark.line + 1
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _line(event: Any) -> int:
    mark = getattr(event, "start_mark", None)
    return mark.line + 1 if mark is not None else 0


def _scan(text: str) -> None:
    """Walks the event stream; raises YAMLInputError on an alias, anchor, depth or size excess."""
    depth = 0
    documents = 0
    for event in yaml.parse(text, Loader=_BASE):
        if isinstance(event, yaml.AliasEvent):
            raise YAMLInputError(f"aliases (*{getattr(event, 'anchor', '')}) are not allowed", _line(event))
        anchor = getattr(event, "anchor", None)
        if anchor:
            raise YAMLInputError(f"anchors (&{anchor}) are not allowed", _line(event))
        if isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise YAMLInputError(f"nesting deeper than {MAX_DEPTH} levels", _line(event))
        elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
            depth -= 1
        elif isinstance(event, yaml.ScalarEvent):
            if len(event.value) > MAX_SCALAR_CHARS:
                raise YAMLInputError(
                    f"a scalar of {len(event.value)} characters (at most {MAX_SCALAR_CHARS})", _line(event)
                )
        elif isinstance(event, yaml.DocumentStartEvent):
            documents += 1
            if documents > MAX_DOCUMENTS:
                raise YAMLInputError(f"more than {MAX_DOCUMENTS} documents", _line(event))


def _yaml_problem(exc: yaml.YAMLError) -> YAMLInputError:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if isinstance(exc, yaml.reader.ReaderError):
        # libyaml and the pure reader both report non-printable input this way
        return YAMLInputError(
            f"unacceptable character at position {exc.position}"
            + (f" (#x{exc.character:04x})" if isinstance(exc.character, int) else "")
        )
    text = (problem or str(exc).splitlines()[0] or type(exc).__name__).strip()
    return YAMLInputError(text, mark.line + 1 if mark is not None else 0)


def load_documents(text: str) -> list[Any]:
    """Every document of a YAML stream (None for empty ones); raises YAMLInputError."""
    if len(text) > MAX_TEXT_BYTES or (
        len(text) * 4 > MAX_TEXT_BYTES and len(text.encode("utf-8", "surrogatepass")) > MAX_TEXT_BYTES
    ):
        raise YAMLInputError(f"larger than the {MAX_TEXT_BYTES} bytes allowed")
    if "\x00" in text:
        raise YAMLInputError(f"binary data (a NUL byte at offset {text.index(chr(0))})")
    try:
        _scan(text)
        return list(yaml.load_all(text, Loader=_UniqueKeyLoader))
    except yaml.YAMLError as exc:
        raise _yaml_problem(exc) from None
    except RecursionError:  # pragma: no cover - depth is bounded before construction
        raise YAMLInputError(f"nesting deeper than {MAX_DEPTH} levels") from None


def read_text(path: str | Path) -> str:
    """A policy file's text, read no further than the size cap; OSError/UnicodeDecodeError/YAMLInputError."""
    with open(path, "rb") as fh:
        data = fh.read(MAX_TEXT_BYTES + 1)
    if len(data) > MAX_TEXT_BYTES:
        raise YAMLInputError(f"larger than the {MAX_TEXT_BYTES} bytes allowed")
    if b"\x00" in data:
        raise YAMLInputError(f"binary data (a NUL byte at offset {data.index(0)})")
    return data.decode("utf-8")
