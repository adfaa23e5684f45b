"""Kubernetes label selectors over Cilium labels (``--label``, ``--to-label``, ``--node-label``).

A selector such as ``app in (a, b),!canary,k8s:tier=backend`` is handled in three steps, the way
Hubble does it:

1. *Source translation*: each key's ``source:`` prefix becomes ``source.`` and a key without a
   source gets ``any.`` (``app=x`` -> ``any.app=x``, ``k8s:app`` -> ``k8s.app``).
2. *Parsing* with the Kubernetes selector grammar (``=``, ``==``, ``!=``, ``in``, ``notin``,
   ``gt``/``lt`` via ``>``/``<``, exists, ``!`` does-not-exist; comma is AND), with the same
   key/value validation and error texts as ``k8s.io/apimachinery``.
3. *Matching* against the flow's labels parsed as Cilium labels (``source:key=value``; a label
   without ``:`` has source ``unspec``). A selector key of source ``any`` (or ``unspec``)
   matches a label of any source; otherwise the source must be equal. The first label (sorted
   by key, stable) with the key provides the value. ``!=``, ``notin`` and ``!k`` match when
   the key is missing.

The result of step 2 is a tuple of requirements; :func:`compile_selector` turns it into a
predicate over a label list, caching the parsed label arrays per list identity is left to the
caller (label lists are short, parsing them is cheap).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from hubblepy.filters.goaddr import (
    AddrSyntaxError,
    GoAddr,
    GoPrefix,
    parse_addr,
    parse_prefix,
    prefix_contains,
)
from hubblepy.gotext import go_quote

# --- step 1: source translation --------------------------------------------------------------


def translate_sources(selector: str) -> str:
    """Rewrite ``src:key`` to ``src.key`` and bare keys to ``any.key`` (Hubble's translateSelector)."""
    out: list[str] = []
    i = 0
    n = len(selector)
    while i < n:
        # advance to the next key, copying spaces and "!"
        while i < n and (selector[i].isspace() or selector[i] == "!"):
            out.append(selector[i])
            i += 1
        # the key runs until a space, "=", "!" or ","
        start = i
        while i < n and not (selector[i].isspace() or selector[i] in "=!,"):
            i += 1
        key = selector[start:i]
        if ":" not in key:
            key = "any:" + key
        out.append(key.replace(":", ".", 1))
        # copy up to and including the next "," outside parentheses
        depth = 0
        while i < n:
            ch = selector[i]
            out.append(ch)
            i += 1
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
            elif ch == "," and depth == 0:
                break
    return "".join(out)


# --- step 2: the Kubernetes selector grammar ---------------------------------------------------

_ERROR, _END, _CLOSE, _COMMA, _NOT, _DEQ, _EQ, _GT, _ID, _IN, _LT, _NEQ, _NOTIN, _OPEN = range(14)
_SYMBOLS = {
    ")": _CLOSE,
    ",": _COMMA,
    "!": _NOT,
    "==": _DEQ,
    "=": _EQ,
    ">": _GT,
    "in": _IN,
    "<": _LT,
    "!=": _NEQ,
    "notin": _NOTIN,
    "(": _OPEN,
}
_SPECIAL = frozenset("=!(),><")
_WHITESPACE = frozenset(" \t\r\n")

_QNAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QNAME_RE = re.compile(f"(?:{_QNAME_FMT})\\Z")
_LABEL_VALUE_FMT = f"({_QNAME_FMT})?"
_LABEL_VALUE_RE = re.compile(f"(?:{_LABEL_VALUE_FMT})\\Z")
_DNS1123_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_FMT = _DNS1123_LABEL + "(\\." + _DNS1123_LABEL + ")*"
_DNS1123_SUBDOMAIN_RE = re.compile(f"(?:{_DNS1123_SUBDOMAIN_FMT})\\Z")


class SelectorError(ValueError):
    """A selector the Kubernetes parser rejects; ``str()`` is its error text."""


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    text = msg + " (e.g. "
    text += " or ".join(f"'{e}', " for e in examples)
    return text + "regex used for validation is '" + fmt + "')"


def _qualified_name_errors(value: str) -> list[str]:
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if prefix == "":
            errs.append("prefix part must be non-empty")
        else:
            if len(prefix) > 253:
                errs.append("prefix part must be no more than 253 characters")
            if not _DNS1123_SUBDOMAIN_RE.match(prefix):
                errs.append(
                    "prefix part "
                    + _regex_error(
                        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                        "characters, '-' or '.', and must start and end with an alphanumeric character",
                        _DNS1123_SUBDOMAIN_FMT,
                        "example.com",
                    )
                )
    else:
        return [
            "a qualified name "
            + _regex_error(
                "must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
                "with an alphanumeric character",
                _QNAME_FMT,
                "MyName",
                "my.name",
                "123-abc",
            )
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if name == "":
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part must be no more than 63 characters")
    if not _QNAME_RE.match(name):
        errs.append(
            "name part "
            + _regex_error(
                "must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
                "with an alphanumeric character",
                _QNAME_FMT,
                "MyName",
                "my.name",
                "123-abc",
            )
        )
    return errs


def _label_value_errors(value: str) -> list[str]:
    errs: list[str] = []
    if len(value) > 63:
        errs.append("must be no more than 63 characters")
    if not _LABEL_VALUE_RE.match(value):
        errs.append(
            _regex_error(
                "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' "
                "or '.', and must start and end with an alphanumeric character",
                _LABEL_VALUE_FMT,
                "MyValue",
                "my_value",
                "12345",
            )
        )
    return errs


def _validate_key(key: str, path: str) -> None:
    errs = _qualified_name_errors(key)
    if errs:
        raise SelectorError(f"{path}: Invalid value: {go_quote(key)}: {'; '.join(errs)}")


def _lex(selector: str) -> list[tuple[int, str]]:
    tokens: list[tuple[int, str]] = []
    i = 0
    n = len(selector)
    while True:
        while i < n and selector[i] in _WHITESPACE:
            i += 1
        if i >= n or selector[i] == "\x00":
            tokens.append((_END, ""))
            return tokens
        if selector[i] in _SPECIAL:
            buf = ""
            best: tuple[int, str] | None = None
            while i < n and selector[i] in _SPECIAL:
                candidate = buf + selector[i]
                if candidate in _SYMBOLS:
                    buf = candidate
                    best = (_SYMBOLS[candidate], candidate)
                    i += 1
                elif best is not None:
                    break
                else:
                    buf = candidate
                    i += 1
            if best is None:
                tokens.append((_ERROR, f"error expected: keyword found '{buf}'"))
            else:
                tokens.append(best)
            continue
        start = i
        while (
            i < n and selector[i] not in _SPECIAL and selector[i] not in _WHITESPACE and selector[i] != "\x00"
        ):
            i += 1
        word = selector[start:i]
        tokens.append((_SYMBOLS[word], word) if word in ("in", "notin") else (_ID, word))


Requirement = tuple[str, str, tuple[str, ...]]  # (key, operator, values)

_BINARY_OPS = "in, notin, =, ==, !=, gt, lt"


class _Parser:
    def __init__(self, selector: str) -> None:
        self.tokens = _lex(selector)
        self.pos = 0

    def _look(self, values: bool = True) -> tuple[int, str]:
        tok, lit = self.tokens[self.pos]
        if values and tok in (_IN, _NOTIN):
            tok = _ID
        return tok, lit

    def _take(self, values: bool = True) -> tuple[int, str]:
        item = self._look(values)
        self.pos += 1
        return item

    def parse(self) -> list[Requirement]:
        reqs: list[Requirement] = []
        while True:
            tok, lit = self._look()
            if tok in (_ID, _NOT):
                try:
                    reqs.append(self._requirement())
                except SelectorError as err:
                    raise SelectorError(f"unable to parse requirement: {err}") from None
                tok, lit = self._take()
                if tok == _END:
                    return reqs
                if tok == _COMMA:
                    tok2, lit2 = self._look()
                    if tok2 not in (_ID, _NOT):
                        raise SelectorError(f"found '{lit2}', expected: identifier after ','")
                    continue
                raise SelectorError(f"found '{lit}', expected: ',' or 'end of string'")
            if tok == _END:
                return reqs
            raise SelectorError(f"found '{lit}', expected: !, identifier, or 'end of string'")

    def _requirement(self) -> Requirement:
        op = ""
        tok, lit = self._take()
        if tok == _NOT:
            op = "!"
            tok, lit = self._take()
        if tok != _ID:
            raise SelectorError(f"found '{lit}', expected: identifier")
        key = lit
        _validate_key(key, "<nil>")
        if self._look()[0] in (_END, _COMMA) and op != "!":
            op = "exists"
        if op in ("!", "exists"):
            return (key, op, ())
        tok, lit = self._take(values=False)
        ops = {_IN: "in", _EQ: "=", _DEQ: "==", _GT: "gt", _LT: "lt", _NOTIN: "notin", _NEQ: "!="}
        if tok not in ops:
            raise SelectorError(f"found '{lit}', expected: {_BINARY_OPS}")
        op = ops[tok]
        values = self._set_values() if op in ("in", "notin") else self._exact_value()
        ordered = tuple(sorted(values))
        errs: list[str] = []
        if op in ("gt", "lt"):
            for i, v in enumerate(ordered):
                if not re.fullmatch(r"[+-]?\d+", v) or not -(2**63) <= int(v) < 2**63:
                    errs.append(
                        f"values[{i}]: Invalid value: {go_quote(v)}: for 'Gt', 'Lt' operators, the value must be an integer"
                    )
        for i, v in enumerate(ordered):
            verrs = _label_value_errors(v)
            if verrs:
                errs.append(f"values[{i}][{key}]: Invalid value: {go_quote(v)}: {'; '.join(verrs)}")
        if len(errs) == 1:
            raise SelectorError(errs[0])
        if errs:
            raise SelectorError("[" + ", ".join(errs) + "]")
        return (key, op, ordered)

    def _set_values(self) -> set[str]:
        tok, lit = self._take()
        if tok != _OPEN:
            raise SelectorError(f"found '{lit}' expected: '('")
        tok, lit = self._look()
        if tok in (_ID, _COMMA):
            values = self._identifier_list()
            if self._take()[0] != _CLOSE:
                raise SelectorError(f"found '{lit}', expected: ')'")
            return values
        if tok == _CLOSE:
            self._take()
            return {""}
        raise SelectorError(f"found '{lit}', expected: ',', ')' or identifier")

    def _identifier_list(self) -> set[str]:
        values: set[str] = set()
        while True:
            tok, lit = self._take()
            if tok == _ID:
                values.add(lit)
                tok2, lit2 = self._look()
                if tok2 == _COMMA:
                    continue
                if tok2 == _CLOSE:
                    return values
                raise SelectorError(f"found '{lit2}', expected: ',' or ')'")
            if tok == _COMMA:
                if not values:
                    values.add("")
                tok2, _ = self._look()
                if tok2 == _CLOSE:
                    values.add("")
                    return values
                if tok2 == _COMMA:
                    self._take()
                    values.add("")
                continue
            raise SelectorError(f"found '{lit}', expected: ',', or identifier")

    def _exact_value(self) -> set[str]:
        tok, _ = self._look()
        if tok in (_END, _COMMA):
            return {""}
        tok, lit = self._take()
        if tok == _ID:
            return {lit}
        raise SelectorError(f"found '{lit}', expected: identifier")


def parse_selector(selector: str) -> list[Requirement]:
    """Translate sources and parse; raise SelectorError with the Kubernetes error text."""
    return _Parser(translate_sources(selector)).parse()


# --- step 3: matching ----------------------------------------------------------------------------

LabelArray = list[tuple[str, str, str]]  # (key, value, source), stable-sorted by key


def parse_cilium_labels(labels: Sequence[str]) -> LabelArray:
    """Parse ``source:key=value`` strings like Cilium's ParseLabel, sorted by key (stable)."""
    parsed: LabelArray = []
    for text in labels:
        if text.startswith("$"):
            source, rest = "reserved", text[1:]
        else:
            colon = text.find(":")
            if colon >= 0:
                source, rest = text[:colon], text[colon + 1 :]
            elif text.startswith("reserved."):
                source, rest = "reserved", text[len("reserved.") :]
            else:
                source, rest = "", text
        if source == "":
            source = "unspec"
        eq = rest.find("=")
        if eq < 0:
            key, value = rest, ""
        elif eq == 0 and source == "reserved":
            key, value = rest[1:], ""
        else:
            key, value = rest[:eq], rest[eq + 1 :]
        parsed.append((key, value, source))
    parsed.sort(key=lambda label: label[0])
    return parsed


def _split_selector_key(key: str) -> tuple[str | None, str]:
    """Split a translated ``source.key``; a source of ``any``/``unspec`` is returned as None."""
    if key.startswith("$"):
        return "reserved", key[1:]
    dot = key.find(".")
    if dot < 0:
        return None, key
    source = key[:dot]
    rest = key[dot + 1 :]
    eq = rest.find("=")
    if eq >= 0 and not (eq == 0 and source == "reserved"):
        rest = rest[:eq]
    elif eq == 0:
        rest = rest[1:]
    if source in ("", "any", "unspec"):
        return None, rest
    return source, rest


_CIDR_CACHE: dict[str, tuple[GoPrefix, GoAddr] | None] = {}


def _cidr_label_prefix(key: str) -> tuple[GoPrefix, GoAddr] | None:
    """The prefix of a ``cidr:`` label key (``-`` stands for ``:``) and its unmasked address."""
    cached = _CIDR_CACHE.get(key, _CIDR_CACHE)
    if cached is not _CIDR_CACHE:
        return cached  # type: ignore[return-value]
    text = key.replace("-", ":")
    try:
        result: tuple[GoPrefix, GoAddr] | None = (parse_prefix(text), parse_addr(text[: text.rfind("/")]))
    except AddrSyntaxError:
        result = None
    if len(_CIDR_CACHE) > 4096:
        _CIDR_CACHE.clear()
    _CIDR_CACHE[key] = result
    return result


def compile_selector(requirements: list[Requirement]) -> Callable[[LabelArray], bool]:
    """Return a predicate over a parsed label array that is true when every requirement holds."""
    checks: list[Callable[[LabelArray], bool]] = []
    for key, op, values in requirements:
        source, bare = _split_selector_key(key)
        checks.append(_requirement_check(source, bare, op, frozenset(values)))
    if not checks:
        return lambda labels: True
    if len(checks) == 1:
        return checks[0]
    return lambda labels: all(check(labels) for check in checks)


def _requirement_check(
    source: str | None, key: str, op: str, values: frozenset[str]
) -> Callable[[LabelArray], bool]:
    if source == "cidr":
        target = _cidr_label_prefix(key)

        def lookup(labels: LabelArray) -> str | None:
            # "cidr:" keys match by containment: cidr:10.0.0.0/8 has cidr:10.1.2.3/32.
            for lkey, lvalue, lsource in labels:
                if lsource != "cidr":
                    continue
                if lkey == key:
                    return lvalue
                if target is not None:
                    have = _cidr_label_prefix(lkey)
                    if (
                        have is not None
                        and target[0].length <= have[0].length
                        and prefix_contains(target[0], have[1])
                    ):
                        return lvalue
            return None

    else:

        def lookup(labels: LabelArray) -> str | None:
            for lkey, lvalue, lsource in labels:
                if lkey == key and (source is None or lsource == source):
                    return lvalue
            return None

    if op in ("=", "==", "in"):
        return lambda labels: (v := lookup(labels)) is not None and v in values
    if op in ("!=", "notin"):
        return lambda labels: (v := lookup(labels)) is None or v not in values
    if op == "exists":
        return lambda labels: lookup(labels) is not None
    if op == "!":
        return lambda labels: lookup(labels) is None
    bound = int(next(iter(values)))

    def compare(labels: LabelArray) -> bool:
        v = lookup(labels)
        if v is None or not re.fullmatch(r"[+-]?\d+", v):
            return False
        number = int(v)
        if not -(2**63) <= number < 2**63:
            return False
        return number > bound if op == "gt" else number < bound

    return compare
