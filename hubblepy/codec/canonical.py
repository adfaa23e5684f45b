"""Fast proof that a parsed JSON object is already in canonical form.

The decoder first proves the *text* is canonical: re-encoding the orjson-parsed
object must give back the exact line bytes (compact, Go escapes, no duplicate
keys). This module proves the *meaning* is canonical: every object has only
proto field names, in declaration order, at most one member per oneof, and
every value has the canonical form of a non-default value of its field
(enum names other than the zero name, 64-bit integers as non-zero decimal
strings, in-range non-zero 32-bit integers, UTC timestamps with 0/3/6/9
fraction digits, non-empty strings, ``true``, non-empty lists, ...).

It is fast because the work per object is generated code: for each message type
and each distinct key tuple seen (``tuple(d)``), a checker function is built once
from the descriptors (or a rejecting one if the keys are unknown, out of order or
break a oneof). The checker compares the value types in one C-level step and
then runs straight-line checks of the values. Compiling that code costs about a
millisecond per key tuple, more than a short file takes to read, so a key tuple is
first checked by a loop over per-field checks (the same expressions, compiled once
per field) and gets its generated function once it has been seen
``_COMPILE_AFTER`` times. Anything it cannot cheaply prove
(doubles, bytes, Any, Duration, FieldMask, Struct, unknown enum numbers) is
reported "not canonical" and left to the slow path: a false "not canonical" only
costs time, a false "canonical" would be a bug.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from . import schema
from .schema import FieldInfo, MessageInfo

Checker = Callable[[Any], bool]

_MAX_PLANS_PER_MESSAGE = 4096
_MAX_INLINE_DEPTH = 4
_COMPILE_AFTER = 64  # sightings of a key tuple before its straight-line checker is generated

# Valid calendar dates only: days per month, Feb 29 in leap years, no year 0000.
_LEAP_YEAR = r"(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)"
_DATE = (
    r"(?:(?!0000)[0-9]{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    r"|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    r"|02-(?:0[1-9]|1[0-9]|2[0-8]))"
    rf"|(?!0000){_LEAP_YEAR}-02-29)"
)
_FRACTION = r"(?:\.(?:[0-9]{3}){0,2}(?!000)[0-9]{3})?"
TIMESTAMP_RE = re.compile(rf"{_DATE}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]{_FRACTION}Z")

_is_timestamp = TIMESTAMP_RE.fullmatch
_is_int64 = re.compile(r"-?[1-9][0-9]{0,17}").fullmatch  # 19 digits: slow path (range check)
_is_uint64 = re.compile(r"[1-9][0-9]{0,18}").fullmatch  # 20 digits: slow path
_is_int64_or_zero = re.compile(r"0|-?[1-9][0-9]{0,17}").fullmatch
_is_uint64_or_zero = re.compile(r"0|[1-9][0-9]{0,18}").fullmatch
_is_str = str.__instancecheck__


_seen_timestamps: set[str] = set()  # recently proven canonical (a line repeats its time)


def _timestamp_ok(value: str) -> bool:
    if _is_timestamp(value) is None:
        return False
    if len(_seen_timestamps) >= 1024:
        _seen_timestamps.clear()
    _seen_timestamps.add(value)
    return True


def _int32_list(values: list) -> bool:
    return all(type(v) is int and -2147483648 <= v <= 2147483647 for v in values)


def _uint32_list(values: list) -> bool:
    return all(type(v) is int and 0 <= v <= 4294967295 for v in values)


def _bool_list(values: list) -> bool:
    return all(type(v) is bool for v in values)


def _is_dict(value: Any) -> bool:
    return type(value) is dict


def _reject(_: Any) -> bool:
    return False


class _Generator:
    """Builds and caches checker functions per (message, key tuple).

    With ``no_empty_strings`` the checkers may assume that no JSON string in the
    line is empty (the decoder proves that with one byte search for ``""``), which
    saves a check per string field.
    """

    def __init__(self, no_empty_strings: bool) -> None:
        self.no_empty_strings = no_empty_strings
        self.plan_tables: dict[str, tuple[dict[tuple, Checker], Callable[[Any], Checker]]] = {}
        self._field_checks: dict[int, Checker | None] = {}  # id(FieldInfo) -> check of one value

    def plans(self, info: MessageInfo) -> tuple[dict[tuple, Checker], Callable[[Any], Checker]]:
        """(plan cache, plan builder) of message ``info``; the builder caches what it builds."""
        found = self.plan_tables.get(info.full_name)
        if found is not None:
            return found
        plans: dict[tuple, Checker] = {}

        def build(d: Any) -> Checker:
            if type(d) is not dict:
                return _reject
            keys = tuple(d)
            if len(plans) >= _MAX_PLANS_PER_MESSAGE:
                plans.clear()
            plan = plans[keys] = self._counting_plan(info, keys, plans)
            return plan

        self.plan_tables[info.full_name] = (plans, build)
        return plans, build

    def dispatcher(self, info: MessageInfo) -> Checker:
        """Checker for any value claimed to be message ``info``."""
        plans, build = self.plans(info)
        plans_get = plans.get

        def check(d: Any) -> Any:
            if type(d) is not dict:
                return False
            return (plans_get(tuple(d)) or build(d))(d)

        return check

    def _fields_for(self, info: MessageInfo, keys: tuple) -> list[FieldInfo] | None:
        """Fields of a key tuple, or None if a key is unknown, lowerCamel, out of order or a 2nd oneof member."""
        fields: list[FieldInfo] = []
        last_index = -1
        oneofs: set[str] = set()
        for key in keys:
            f = info.by_key.get(key)
            if f is None or f.name != key or f.index <= last_index:
                return None
            if f.oneof is not None:
                if f.oneof in oneofs:
                    return None
                oneofs.add(f.oneof)
            last_index = f.index
            fields.append(f)
        return fields

    def _counting_plan(self, info: MessageInfo, keys: tuple, plans: dict[tuple, Checker]) -> Checker:
        """The looping checker of a key tuple, replaced by the generated one after enough uses."""
        loop = self._loop_plan(info, keys)
        if loop is _reject or loop is _is_dict:
            return loop
        seen = 0

        def plan(d: Any) -> Any:
            nonlocal seen
            seen += 1
            if seen >= _COMPILE_AFTER and plans.get(keys) is plan:
                plans[keys] = self._plan(info, keys, d)
            return loop(d)

        return plan

    def _loop_plan(self, info: MessageInfo, keys: tuple) -> Checker:
        """Checker for dicts with exactly these keys: the generated expressions, field by field."""
        if not keys:
            return _is_dict
        fields = self._fields_for(info, keys)
        if fields is None:
            return _reject
        checks = []
        for f in fields:
            check = self._field_check(f)
            if check is None:
                return _reject
            checks.append(check)

        def loop(d: Any) -> bool:
            for check, value in zip(checks, d.values(), strict=True):  # noqa: SIM110 - faster than all()
                if not check(value):
                    return False
            return True

        return loop

    def _field_check(self, f: FieldInfo) -> Checker | None:
        """The value check of a present field as a function (None if never canonical-fast)."""
        key = id(f)
        if key in self._field_checks:
            return self._field_checks[key]
        env: dict[str, Any] = {}
        expression = self._value_check(f, "v", env)
        check = None
        if expression is not None:
            check = eval(f"lambda v: {expression}", env)  # noqa: S307 - generated from descriptors only
        self._field_checks[key] = check
        return check

    def _plan(self, info: MessageInfo, keys: tuple, sample: dict | None = None) -> Checker:
        """Checker for dicts of message ``info`` with exactly these keys.

        The children that ``sample`` (the dict that triggered the build) holds are
        inlined for their current key tuple, so the usual shape of a flow is checked
        by one generated function; other child shapes fall back to dispatch.
        """
        if not keys:
            return _is_dict  # also reached for other empty iterables: [] or ""
        fields = self._fields_for(info, keys)
        if fields is None:
            return _reject
        env: dict[str, Any] = {}
        lines = ["def plan(d):"]
        if not self._block(fields, "d", "v", sample, env, lines, 1):
            return _reject
        lines.append("    return True")
        exec("\n".join(lines), env)  # noqa: S102 - generated from descriptors only
        return env["plan"]

    def _block(
        self,
        fields: list[FieldInfo],
        source: str,
        prefix: str,
        sample: dict | None,
        env: dict[str, Any],
        lines: list[str],
        depth: int,
    ) -> bool:
        """Append statements checking the values of dict ``source`` (fields known); False if impossible."""
        pad = "    " * depth
        names = [f"{prefix}{i}" for i in range(len(fields))]
        lines.append(f"{pad}{', '.join(names)}{',' if len(names) == 1 else ''} = {source}.values()")
        sample_values = list(sample.values()) if sample is not None else [None] * len(fields)
        checks: list[str] = []
        for f, var, child in zip(fields, names, sample_values, strict=True):
            if (
                f.kind == schema.MESSAGE
                and not f.repeated
                and depth <= _MAX_INLINE_DEPTH
                and type(child) is dict
                and child
                and self._inline_child(f, var, child, env, lines, depth)
            ):
                continue
            check = self._value_check(f, var, env)
            if check is None:
                return False
            checks.append(check)
        if checks:
            lines.append(f"{pad}if not ({' and '.join(checks)}):")
            lines.append(f"{pad}    return False")
        return True

    def _inline_child(
        self, f: FieldInfo, var: str, child: dict, env: dict[str, Any], lines: list[str], depth: int
    ) -> bool:
        keys = tuple(child)
        assert f.message is not None  # MESSAGE fields always carry their type
        fields = self._fields_for(f.message, keys)
        if fields is None:
            return False
        inner: list[str] = []
        if not self._block(fields, var, f"{var}_", child, env, inner, depth + 1):
            return False
        pad = "    " * depth
        number = len(env)
        plans, build = self.plans(f.message)
        env[f"K{number}"], env[f"P{number}"], env[f"B{number}"] = keys, plans.get, build
        # A non-dict whose tuple() equals the keys fails on .values() (AttributeError).
        lines.append(f"{pad}if tuple({var}) == K{number}:")
        lines.extend(inner)
        lines.append(f"{pad}elif not (P{number}(tuple({var})) or B{number}({var}))({var}):")
        lines.append(f"{pad}    return False")
        return True

    def _value_check(self, f: FieldInfo, var: str, env: dict[str, Any]) -> str | None:
        """Check expression for the value of a present field, None if never canonical-fast."""
        if f.repeated:
            element = self._element_check(f, env)
            if element is None:
                return None
            return f"type({var}) is list and {var} and {element.replace('VALUES', var)}"
        allow_default = f.presence
        kind = f.kind
        if kind == schema.WRAPPER:
            assert f.wrapped is not None
            kind, allow_default = f.wrapped.kind, True
            if kind == schema.ENUM:
                return None
        if kind == schema.STRING:
            if allow_default or self.no_empty_strings:
                return f"type({var}) is str"
            return f'type({var}) is str and {var} != ""'
        if kind == schema.BOOL:
            return f"({var} is True or {var} is False)" if allow_default else f"{var} is True"
        if kind == schema.INT32:
            check = f"type({var}) is int and -2147483648 <= {var} <= 2147483647"
            return check if allow_default else f"{check} and {var} != 0"
        if kind == schema.UINT32:
            return f"type({var}) is int and {0 if allow_default else 1} <= {var} <= 4294967295"
        if kind in (schema.INT64, schema.UINT64):
            name = ("int64" if kind == schema.INT64 else "uint64") + ("_or_zero" if allow_default else "")
            env[name] = globals()[f"_is_{name}"]
            return f"{name}({var})"  # TypeError for non-strings: caught by the caller
        if kind == schema.ENUM:
            assert f.enum is not None
            name = f"E{len(env)}"
            env[name] = frozenset(
                label for number, label in f.enum.names.items() if allow_default or number != 0
            )
            return f"{var} in {name}"  # only str members; TypeError for unhashables
        if kind == schema.TIMESTAMP:
            env["timestamp"], env["seen_timestamps"] = _timestamp_ok, _seen_timestamps
            return f"({var} in seen_timestamps or timestamp({var}))"
        if kind == schema.MESSAGE:
            # Inline dispatch: plan for the child's key tuple, built on first sight. A
            # non-dict child gives a rejecting plan (build) or an error (tuple/values).
            assert f.message is not None
            plans, build = self.plans(f.message)
            number = len(env)
            env[f"P{number}"], env[f"B{number}"] = plans.get, build
            return f"(P{number}(tuple({var})) or B{number}({var}))({var})"
        return None

    def _element_check(self, f: FieldInfo, env: dict[str, Any]) -> str | None:
        """Expression (over ``VALUES``) checking all elements of a repeated field (zeros allowed)."""
        kind = f.kind
        name = f"L{len(env)}"
        if kind == schema.STRING:
            env["is_str"] = _is_str
            return "all(map(is_str, VALUES))"
        if kind == schema.MESSAGE:
            assert f.message is not None
            env[name] = self.dispatcher(f.message)
            return f"all(map({name}, VALUES))"
        if kind == schema.BOOL:
            env[name] = _bool_list
        elif kind == schema.INT32:
            env[name] = _int32_list
        elif kind == schema.UINT32:
            env[name] = _uint32_list
        elif kind in (schema.INT64, schema.UINT64):
            matcher = _is_int64_or_zero if kind == schema.INT64 else _is_uint64_or_zero
            env[name] = lambda values, m=matcher: all(type(v) is str and m(v) for v in values)
        elif kind == schema.ENUM:
            assert f.enum is not None
            allowed = frozenset(f.enum.names.values())
            env[name] = lambda values, a=allowed: all(type(v) is str and v in a for v in values)
        elif kind == schema.TIMESTAMP:
            env[name] = lambda values: all(type(v) is str and _is_timestamp(v) for v in values)
        else:
            return None
        return f"{name}(VALUES)"


_generators = {True: _Generator(True), False: _Generator(False)}


def canonical_checker(info: MessageInfo, *, no_empty_strings: bool = False) -> Checker:
    """Function telling whether an orjson-parsed object is the canonical dict of ``info``.

    Only meaningful together with the textual check done by the decoder. The
    checker may raise TypeError/AttributeError for values of a wrong type: treat
    that as "not canonical". With ``no_empty_strings=True`` it is only valid for
    objects known to hold no empty string anywhere.
    """
    return _generators[no_empty_strings].dispatcher(info)
