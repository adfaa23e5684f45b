"""A port of the parts of Go's pflag that hubble's commands use, so every command reads flags alike.

* ``--flag value`` and ``--flag=value``; short flags as ``-n x``, ``-nx`` and ``-n=x``; short
  booleans can be grouped (``-fD``); ``--`` ends the flags; other words are positional;
* flags with a no-option default (booleans, ``--not``, ``-A``, ``-4``/``-6``...) take a value only
  after ``=``: ``--numeric false`` leaves ``false`` as a positional word;
* values are applied in command-line order (``--not`` negates the next filter flag);
* errors carry pflag's exact one-line text (``unknown flag: --x``, ``invalid argument "v" for
  "-t, --type" flag: ...``).

A :class:`FlagSpec` also carries what help and completion print: its group, the value's type name
and a description.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from hubblepy.gotext import go_parse_uint, go_quote, go_quote_rune


class UsageError(Exception):
    """A command-line error; ``str()`` is upstream's exact one-line stderr message."""


class HelpRequested(Exception):
    """``-h``/``--help`` was given (and no flag error came first)."""


#: pflag's type names, shown in help after the flag (``--last uint``).
TYPE_NAMES = {
    "filter": "filter",
    "bool": "",
    "string": "string",
    "uint64": "uint",
    "uint16": "uint16",
    "duration": "duration",
    "float64": "float",
    "string_slice": "strings",
    "string_array": "stringArray",
}


@dataclass(frozen=True)
class FlagSpec:
    """One flag: long name, optional one-letter short name, value kind, and its help."""

    name: str
    kind: str  # filter, bool, string, uint64, uint16, duration, float64, string_slice, string_array
    short: str = ""
    no_opt_default: str = ""
    help: str = ""
    group: str = ""
    default: str = ""  # shown as (default "x") / (default x) in help when not empty

    @property
    def spelling(self) -> str:
        """The flag as pflag names it in error messages (``-t, --type`` or ``--verdict``)."""
        return f"-{self.short}, --{self.name}" if self.short else f"--{self.name}"


def bool_flag(name: str, short: str = "", help: str = "", group: str = "", default: str = "") -> FlagSpec:
    """A boolean flag (``--x`` means ``--x=true``)."""
    return FlagSpec(name, "bool", short, "true", help, group, default)


class FilterSink(Protocol):
    """Where ``filter`` flags go (observe's FlowFilter builder)."""

    def set(self, name: str, value: str) -> None: ...


def go_parse_bool(text: str) -> bool:
    """Go ``strconv.ParseBool``."""
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError(f"strconv.ParseBool: parsing {go_quote(text)}: invalid syntax")


def read_csv(text: str) -> list[str]:
    """pflag's ``readAsCSV`` of a string-slice value."""
    if text == "":
        return []
    import csv  # lazy: start-up time

    try:
        return next(csv.reader([text.split("\n", 1)[0]], strict=True))
    except (csv.Error, StopIteration) as exc:
        raise ValueError(f"parse error: {exc}") from None


class FlagValues:
    """Flag values as set on the command line, in order, with pflag's per-kind semantics."""

    def __init__(self, filters: FilterSink | None = None) -> None:
        self.values: dict[str, Any] = {}  # flag name -> bool, str, int or list[str]
        self.changed: set[str] = set()
        self.filters = filters

    def set(self, spec: FlagSpec, value: str) -> None:
        try:
            self._set(spec, value)
        except ValueError as exc:
            raise UsageError(
                f"invalid argument {go_quote(value)} for {go_quote(spec.spelling)} flag: {exc}"
            ) from None
        self.changed.add(spec.name)

    def _set(self, spec: FlagSpec, value: str) -> None:
        kind = spec.kind
        if kind == "filter":
            assert self.filters is not None, "filter flags need a filter sink"
            self.filters.set(spec.name, value)
        elif kind == "bool":
            self.values[spec.name] = go_parse_bool(value)
        elif kind == "string":
            self.values[spec.name] = value
        elif kind == "uint64":
            self.values[spec.name] = go_parse_uint(value, 0, 64)
        elif kind == "uint16":
            self.values[spec.name] = go_parse_uint(value, 0, 16)
        elif kind == "duration":
            from hubblepy.cli.timeparse import DurationError, parse_go_duration

            try:
                self.values[spec.name] = parse_go_duration(value)
            except DurationError as exc:
                raise ValueError(str(exc)) from None
        elif kind == "float64":
            try:
                self.values[spec.name] = float(value)
            except ValueError:
                raise ValueError(f"strconv.ParseFloat: parsing {go_quote(value)}: invalid syntax") from None
        elif kind == "string_slice":
            items = read_csv(value)
            previous = self.values.get(spec.name, []) if spec.name in self.changed else []
            self.values[spec.name] = [*previous, *items]
        elif kind == "string_array":
            previous = self.values.get(spec.name, []) if spec.name in self.changed else []
            self.values[spec.name] = [*previous, value]
        else:  # pragma: no cover - table and setter are kept in sync
            raise ValueError(f"unsupported flag kind {kind}")

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)


class FlagSet:
    """The flags one command accepts, looked up by long and short name."""

    def __init__(self, specs: Iterable[FlagSpec]) -> None:
        self.specs = list(specs)
        self.by_name = {spec.name: spec for spec in self.specs}
        self.by_short = {spec.short: spec for spec in self.specs if spec.short}

    def parse(self, argv: list[str], filters: FilterSink | None = None) -> tuple[FlagValues, list[str]]:
        """Walk argv like pflag's parseArgs; return the values and the positional words."""
        values = FlagValues(filters)
        positional: list[str] = []
        i = 0
        while i < len(argv):
            arg = argv[i]
            i += 1
            if len(arg) < 2 or arg[0] != "-":
                positional.append(arg)
                continue
            if arg[1] == "-":
                if len(arg) == 2:  # "--" ends the flags
                    positional.extend(argv[i:])
                    break
                body = arg[2:]
                if body[0] in "-=":
                    raise UsageError(f"bad flag syntax: {arg}")
                name, has_value, inline = body.partition("=")
                spec = self.by_name.get(name)
                if spec is None:
                    raise UsageError(f"unknown flag: --{name}")
                if has_value:
                    value = inline
                elif spec.no_opt_default:
                    value = spec.no_opt_default
                elif i < len(argv):
                    value = argv[i]
                    i += 1
                else:
                    raise UsageError(f"flag needs an argument: {arg}")
                values.set(spec, value)
                continue
            shorthands = arg[1:]
            while shorthands:
                letter = shorthands[0]
                rest = shorthands[1:]
                spec = self.by_short.get(letter)
                if spec is None:
                    raise UsageError(f"unknown shorthand flag: {go_quote_rune(letter)} in -{shorthands}")
                if len(shorthands) > 2 and shorthands[1] == "=":
                    value, rest = shorthands[2:], ""
                elif spec.no_opt_default:
                    value = spec.no_opt_default
                elif len(shorthands) > 1:
                    value, rest = shorthands[1:], ""
                elif i < len(argv):
                    value = argv[i]
                    i += 1
                else:
                    raise UsageError(f"flag needs an argument: {go_quote_rune(letter)} in -{shorthands}")
                values.set(spec, value)
                shorthands = rest
        return values, positional
