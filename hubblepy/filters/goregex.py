"""Compile Go RE2 regular expressions (``regexp.Compile`` syntax) with Python's ``re``.

Hubble's ``--http-path``, ``--http-url`` and ``dns_query`` filters are Go regexps. This module
walks the pattern once with Go's syntax rules, rejects what RE2 rejects (backreferences,
lookaround, possessive quantifiers, ...) with Go-like error texts such as
``error parsing regexp: missing closing ): `(```, and emits an equivalent Python pattern:

- ``\\d \\w \\s \\b`` are ASCII-only in Go and are spelled out as ASCII classes;
- ``$`` outside multi-line mode is end of text (Python ``\\Z``), ``\\z`` becomes ``\\Z``;
- inline flags in the middle of a group (``a(?i)b``) become a scoped group to the group's end;
- ``\\Q...\\E``, ``\\x{...}``, octal escapes and POSIX classes ``[[:alpha:]]`` are expanded;
- a ``{`` that does not start a valid repeat is a literal, as in Go.

Unicode classes (``\\pL``) are not supported and give a clear error.
"""

from __future__ import annotations

import re

_WORD = "0-9A-Za-z_"
_PERL_CLASSES = {
    "d": ("0-9", False),
    "D": ("0-9", True),
    "s": ("\\t\\n\\f\\r ", False),
    "S": ("\\t\\n\\f\\r ", True),
    "w": (_WORD, False),
    "W": (_WORD, True),
}
_POSIX_CLASSES = {
    "alnum": "0-9A-Za-z",
    "alpha": "A-Za-z",
    "ascii": "\\x00-\\x7f",
    "blank": "\\t ",
    "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9",
    "graph": "!-~",
    "lower": "a-z",
    "print": " -~",
    "punct": "!-/:-@\\[-`{-~",
    "space": "\\t\\n\\v\\f\\r ",
    "upper": "A-Z",
    "word": _WORD,
    "xdigit": "0-9A-Fa-f",
}
_WORD_BOUNDARY = f"(?:(?<=[{_WORD}])(?![{_WORD}])|(?<![{_WORD}])(?=[{_WORD}]))"
_NOT_WORD_BOUNDARY = f"(?:(?<=[{_WORD}])(?=[{_WORD}])|(?<![{_WORD}])(?![{_WORD}]))"
_REPEAT_RE = re.compile(r"\{(\d+)(,(\d*))?\}")
_NAME_RE = re.compile(r"[A-Za-z0-9_]+")
_MAX_REPEAT = 1000


class GoRegexError(ValueError):
    """A pattern Go's regexp package would reject; ``str()`` is Go's error text."""


def _error(code: str, expr: str) -> GoRegexError:
    return GoRegexError(f"error parsing regexp: {code}: `{expr}`")


def _char(code: int) -> str:
    """A single code point written so that Python's re reads it as a literal, in or out of a class."""
    if code < 0x80:
        ch = chr(code)
        return ch if ch.isalnum() else f"\\x{code:02x}"
    return f"\\U{code:08x}" if code > 0xFFFF else f"\\u{code:04x}"


class _Translator:
    def __init__(self, pattern: str) -> None:
        self.src = pattern
        self.pos = 0
        self.out: list[str] = []
        # One entry per open group: how many extra ")" close flag scopes opened inside it.
        self.groups: list[int] = [0]
        self.multiline = [False]  # (?m) state per group level
        self.can_repeat = False
        self.last_repeat_start = -1  # source position of the previous repeat operator
        self.names: set[str] = set()

    def run(self) -> str:
        src = self.src
        while self.pos < len(src):
            ch = src[self.pos]
            if ch in "*+?{":
                if self._repeat():
                    continue
                self.last_repeat_start = -1  # a "{" that is not a repeat is a literal
                self._literal(ord("{"))
                self.pos += 1
                continue
            self.last_repeat_start = -1
            if ch == "\\":
                self._escape()
            elif ch == "(":
                self._open_group()
            elif ch == ")":
                self._close_group()
            elif ch == "[":
                self._class()
            elif ch == "|":
                self.out.append("|")
                self.pos += 1
                self.can_repeat = False
            elif ch == "^":
                self.out.append("(?:^)" if not self.multiline[-1] else "(?m:^)")
                self.pos += 1
                self.can_repeat = True
            elif ch == "$":
                self.out.append("(?:\\Z)" if not self.multiline[-1] else "(?m:$)")
                self.pos += 1
                self.can_repeat = True
            elif ch == ".":
                self.out.append(".")
                self.pos += 1
                self.can_repeat = True
            else:
                self._literal(ord(ch))
                self.pos += 1
        if len(self.groups) > 1:
            raise _error("missing closing )", src)
        self.out.append(")" * self.groups[0])
        return "".join(self.out)

    # -- pieces -------------------------------------------------------------------------------

    def _literal(self, code: int) -> None:
        self.out.append(_char(code))
        self.can_repeat = True

    def _repeat(self) -> bool:
        src = self.src
        start = self.pos
        ch = src[start]
        if ch == "{":
            m = _REPEAT_RE.match(src, start)
            if m is None:
                return False
            lo = int(m.group(1))
            hi = lo if m.group(2) is None else (int(m.group(3)) if m.group(3) else -1)
            end = m.end()
            if lo > _MAX_REPEAT or hi > _MAX_REPEAT or (hi >= 0 and hi < lo):
                raise _error("invalid repeat count", src[start:end])
            op = m.group(0)
        else:
            end = start + 1
            op = ch
        if end < len(src) and src[end] == "?":
            end += 1
            op += "?"
        if self.last_repeat_start >= 0:
            raise _error("invalid nested repetition operator", src[self.last_repeat_start : end])
        if not self.can_repeat:
            raise _error("missing argument to repetition operator", src[start:end])
        self.out.append(op)
        self.last_repeat_start = start
        self.pos = end
        return True

    def _escape(self) -> None:
        src = self.src
        start = self.pos
        if start + 1 >= len(src):
            raise GoRegexError("error parsing regexp: trailing backslash at end of expression: ``")
        c = src[start + 1]
        self.pos = start + 2
        self.can_repeat = True
        if c == "A":
            self.out.append("(?:\\A)")
        elif c == "z":
            self.out.append("(?:\\Z)")
        elif c == "b":
            self.out.append(_WORD_BOUNDARY)
        elif c == "B":
            self.out.append(_NOT_WORD_BOUNDARY)
        elif c in _PERL_CLASSES:
            body, negated = _PERL_CLASSES[c]
            self.out.append(f"[{'^' if negated else ''}{body}]")
        elif c == "Q":
            end = src.find("\\E", self.pos)
            text = src[self.pos :] if end < 0 else src[self.pos : end]
            self.pos = len(src) if end < 0 else end + 2
            self.out.append("(?:" + "".join(_char(ord(x)) for x in text) + ")")
        elif c in "pP":
            raise GoRegexError(
                f"error parsing regexp: unsupported Unicode class escape: `{src[start : start + 3]}`"
            )
        else:
            self.pos = start
            self._literal(self._escape_char(in_class=False))

    def _escape_char(self, in_class: bool) -> int:
        """Parse a single-character escape at self.pos (the backslash); return its code point."""
        src = self.src
        start = self.pos
        if start + 1 >= len(src):
            raise GoRegexError("error parsing regexp: trailing backslash at end of expression: ``")
        c = src[start + 1]
        self.pos = start + 2
        if "1" <= c <= "7" and not (self.pos < len(src) and "0" <= src[self.pos] <= "7"):
            raise _error("invalid escape sequence", src[start : self.pos])
        if "0" <= c <= "7":
            digits = c
            while len(digits) < 3 and self.pos < len(src) and "0" <= src[self.pos] <= "7":
                digits += src[self.pos]
                self.pos += 1
            return int(digits, 8)
        if c == "x":
            if self.pos < len(src) and src[self.pos] == "{":
                close = src.find("}", self.pos)
                digits = src[self.pos + 1 : close] if close > 0 else ""
                if close < 0 or not digits or any(d not in "0123456789abcdefABCDEF" for d in digits):
                    raise _error(
                        "invalid escape sequence", src[start : (close + 1 if close > 0 else len(src))]
                    )
                value = int(digits, 16)
                if value > 0x10FFFF:
                    raise _error("invalid escape sequence", src[start : close + 1])
                self.pos = close + 1
                return value
            digits = src[self.pos : self.pos + 2]
            if len(digits) < 2 or any(d not in "0123456789abcdefABCDEF" for d in digits):
                raise _error("invalid escape sequence", src[start : self.pos + len(digits)])
            self.pos += 2
            return int(digits, 16)
        simple = {"a": 7, "f": 12, "t": 9, "n": 10, "r": 13, "v": 11}
        if c in simple:
            return simple[c]
        if ord(c) < 0x80 and not c.isalnum():
            return ord(c)
        raise _error("invalid escape sequence", src[start : self.pos])

    def _open_group(self) -> None:
        src = self.src
        start = self.pos
        self.can_repeat = False
        if not src.startswith("(?", start):
            self.out.append("(")
            self._push_group()
            self.pos += 1
            return
        rest = src[start:]
        starts_p = len(rest) > 4 and rest[2] == "P" and rest[3] == "<"
        starts_name = len(rest) > 3 and rest[2] == "<"
        if starts_p or starts_name:
            end = rest.find(">")
            if end < 0:
                raise _error("invalid named capture", rest)
            name = rest[(4 if starts_p else 3) : end]
            if not _NAME_RE.fullmatch(name):
                raise _error("invalid named capture", rest[: end + 1])
            if name in self.names:
                raise _error("duplicate capture group name", name)
            self.names.add(name)
            self.out.append("(")  # names are irrelevant for matching; Go allows some Python does not
            self._push_group()
            self.pos = start + end + 1
            return
        # Flags: (?flags) or (?flags:re)
        i = start + 2
        flags_on: list[str] = []
        flags_off: list[str] = []
        negative = False
        saw_flag = False
        while i < len(src):
            c = src[i]
            i += 1
            if c in "imsU":
                (flags_off if negative else flags_on).append(c)
                saw_flag = True
                continue
            if c == "-" and not negative:
                negative = True
                saw_flag = False
                continue
            if c in ":)" and not (negative and not saw_flag):
                if "U" in flags_on or "U" in flags_off:
                    raise GoRegexError("error parsing regexp: the U (ungreedy) flag is not supported")
                on = "".join(f for f in flags_on if f != "m")
                off = "".join(f for f in flags_off if f != "m")
                multiline = self.multiline[-1]
                if "m" in flags_on:
                    multiline = True
                if "m" in flags_off:
                    multiline = False
                scope = f"(?{on}{'-' + off if off else ''}:" if (on or off) else "(?:"
                self.pos = i
                if c == ":":
                    self.out.append(scope)
                    self._push_group(multiline)
                else:
                    # Applies to the rest of the current group: open a scope closed with it.
                    self.out.append(scope)
                    self.groups[-1] += 1
                    self.multiline[-1] = multiline
                return
            break
        raise _error("invalid or unsupported Perl syntax", src[start:i])

    def _push_group(self, multiline: bool | None = None) -> None:
        self.groups.append(0)
        self.multiline.append(self.multiline[-1] if multiline is None else multiline)

    def _close_group(self) -> None:
        if len(self.groups) == 1:
            raise _error("unexpected )", self.src)
        extra = self.groups.pop()
        self.multiline.pop()
        self.out.append(")" * extra + ")")
        self.pos += 1
        self.can_repeat = True

    def _class(self) -> None:
        src = self.src
        start = self.pos
        whole = src[start:]
        i = start + 1
        parts: list[str] = []
        negated = False
        if i < len(src) and src[i] == "^":
            negated = True
            i += 1
        first = True
        while True:
            if i >= len(src):
                raise _error("missing closing ]", whole)
            c = src[i]
            if c == "]" and not first:
                i += 1
                break
            first = False
            if src.startswith("[:", i):
                close = src.find(":]", i + 2)
                if close >= 0:
                    name = src[i + 2 : close]
                    neg = name.startswith("^")
                    body = _POSIX_CLASSES.get(name[1:] if neg else name)
                    if body is None:
                        raise _error("invalid character class range", src[i : close + 2])
                    if neg:
                        raise GoRegexError("error parsing regexp: negated POSIX classes are not supported")
                    parts.append(body)
                    i = close + 2
                    continue
            if c == "\\" and i + 1 < len(src) and src[i + 1] in _PERL_CLASSES:
                body, neg = _PERL_CLASSES[src[i + 1]]
                if neg:
                    parts.append({"D": "\\D", "S": "\\S", "W": "\\W"}[src[i + 1]])
                else:
                    parts.append(body)
                i += 2
                continue
            if c == "\\" and i + 1 < len(src) and src[i + 1] in "pP":
                raise GoRegexError(
                    f"error parsing regexp: unsupported Unicode class escape: `{src[i : i + 3]}`"
                )
            range_start = i
            lo, i = self._class_char(i, whole)
            hi = lo
            if i + 1 < len(src) and src[i] == "-" and src[i + 1] != "]":
                hi, i = self._class_char(i + 1, whole)
                if hi < lo:
                    raise _error("invalid character class range", src[range_start:i])
            parts.append(_char(lo) if lo == hi else f"{_char(lo)}-{_char(hi)}")
        self.pos = i
        self.out.append("[" + ("^" if negated else "") + "".join(parts) + "]")
        self.can_repeat = True

    def _class_char(self, i: int, whole: str) -> tuple[int, int]:
        src = self.src
        if i >= len(src):
            raise _error("missing closing ]", whole)
        if src[i] == "\\":
            self.pos = i
            code = self._escape_char(in_class=True)
            return code, self.pos
        return ord(src[i]), i + 1


def translate(pattern: str) -> str:
    """Return the Python ``re`` pattern equivalent to Go RE2 ``pattern`` or raise GoRegexError."""
    return _Translator(pattern).run()


def compile_go_regex(pattern: str) -> re.Pattern[str]:
    """Compile a Go RE2 pattern for unanchored ``search`` use; raise GoRegexError like Go."""
    translated = translate(pattern)
    try:
        return re.compile(translated)
    except re.error as err:  # should not happen for a pattern Go accepts; report it plainly
        raise GoRegexError(f"error parsing regexp: {err.msg}: `{pattern}`") from None
