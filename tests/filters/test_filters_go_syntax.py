"""Go syntax helpers behind the filters: RE2 regexps, netip addresses, request-URI paths."""

from __future__ import annotations

import pytest

from hubblepy.filters.goaddr import AddrSyntaxError, parse_addr, parse_prefix, prefix_contains
from hubblepy.filters.goregex import GoRegexError, compile_go_regex
from hubblepy.filters.gourl import request_uri_path
from hubblepy.gotext import go_quote, go_quote_rune

# --- RE2 semantics on Python's re ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("a$", "a\n", False),  # Go "$" is end of text without (?m)
        ("(?m)a$", "a\nb", True),
        (r"a\z", "a", True),
        (r"\d", "\u0663", False),  # Go \d is ASCII only
        (r"\w+", "é", False),
        (r"\s", "\v", False),
        (r"\bfoo\b", "é foo", True),
        (r"\bfoo", "éfoo", True),  # é is not an ASCII word character
        ("a(?i)bc", "aBC", True),
        ("a(?i)bc", "ABC", False),
        ("(?i:b)c", "Bc", True),
        ("(?i:b)c", "BC", False),
        ("[[:alpha:]]+[[:digit:]]", "ab1", True),
        (r"\Qa.b\E", "axb", False),
        (r"\Qa.b\E", "a.b", True),
        (r"\x{41}\101", "AA", True),
        ("a{,3}", "a{,3}", True),  # not a repeat in Go
        ("x{2}", "xx", True),
        ("[]a]", "]", True),
        ("[^]a]", "b", True),
        ("^/v1/(charges|refunds)", "/v1/refunds", True),
        ("(?s).", "\n", True),
        (".", "\n", False),
        ("^*a", "a", True),  # Go accepts a repeated empty-width assertion
        ("(?P<1st>a)(?<second>b)", "ab", True),
    ],
)
def test_go_regex_semantics(pattern: str, text: str, expected: bool) -> None:
    assert (compile_go_regex(pattern).search(text) is not None) is expected


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("(", "error parsing regexp: missing closing ): `(`"),
        ("a(b", "error parsing regexp: missing closing ): `a(b`"),
        ("a)", "error parsing regexp: unexpected ): `a)`"),
        ("x[a-", "error parsing regexp: missing closing ]: `[a-`"),
        ("[z-a]", "error parsing regexp: invalid character class range: `z-a`"),
        ("a**", "error parsing regexp: invalid nested repetition operator: `**`"),
        ("a*?+", "error parsing regexp: invalid nested repetition operator: `*?+`"),
        ("+a", "error parsing regexp: missing argument to repetition operator: `+`"),
        ("(|?)", "error parsing regexp: missing argument to repetition operator: `?`"),
        ("a{1001}", "error parsing regexp: invalid repeat count: `{1001}`"),
        (r"\8", r"error parsing regexp: invalid escape sequence: `\8`"),
        (r"(a)\1", r"error parsing regexp: invalid escape sequence: `\1`"),
        ("(?=a)", "error parsing regexp: invalid or unsupported Perl syntax: `(?=`"),
        ("(?!a)", "error parsing regexp: invalid or unsupported Perl syntax: `(?!`"),
        ("(?P<>a)", "error parsing regexp: invalid named capture: `(?P<>`"),
        ("a\\", "error parsing regexp: trailing backslash at end of expression: ``"),
        ("(?P<n>a)(?P<n>b)", "error parsing regexp: duplicate capture group name: `n`"),
    ],
)
def test_go_regex_errors(pattern: str, message: str) -> None:
    with pytest.raises(GoRegexError) as info:
        compile_go_regex(pattern)
    assert str(info.value) == message


# --- netip -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("300.1.1.1", 'ParseAddr("300.1.1.1"): IPv4 field has value >255'),
        ("1.2.3", 'ParseAddr("1.2.3"): IPv4 address too short'),
        ("1.2.3.4.5", 'ParseAddr("1.2.3.4.5"): IPv4 address too long'),
        ("01.2.3.4", 'ParseAddr("01.2.3.4"): IPv4 field has octet with leading zero'),
        ("1..2.3", 'ParseAddr("1..2.3"): IPv4 field must have at least one digit (at ".2.3")'),
        ("1.2.3.x", 'ParseAddr("1.2.3.x"): unexpected character (at "x")'),
        ("host", 'ParseAddr("host"): unable to parse IP'),
        ("", 'ParseAddr(""): unable to parse IP'),
        ("fe80::1%", 'ParseAddr("fe80::1%"): zone must be a non-empty string'),
        ("12345::", 'ParseAddr("12345::"): each group must have 4 or less digits (at "12345::")'),
        ("1:2", 'ParseAddr("1:2"): address string too short'),
        (
            "1:2:3:4:5:6:7:8::",
            'ParseAddr("1:2:3:4:5:6:7:8::"): the :: must expand to at least one field of zeros',
        ),
        ("1:2:3:4:5:6:7:8:9", 'ParseAddr("1:2:3:4:5:6:7:8:9"): trailing garbage after address (at "9")'),
        ("1::2::3", 'ParseAddr("1::2::3"): multiple :: in address (at ":3")'),
    ],
)
def test_parse_addr_errors(text: str, message: str) -> None:
    with pytest.raises(AddrSyntaxError) as info:
        parse_addr(text)
    assert str(info.value) == message


def test_parse_addr_values() -> None:
    assert parse_addr("10.0.0.1").value == 0x0A000001
    assert parse_addr("::ffff:10.0.0.1").bits == 128
    assert parse_addr("fe80::1%eth0").zone == "eth0"
    assert parse_addr("fd00:10:244:1:0::1e") == parse_addr("fd00:10:244:1::1e")


def test_prefixes() -> None:
    net = parse_prefix("10.8.1.7/24")  # host bits are allowed and masked
    assert prefix_contains(net, parse_addr("10.8.1.200"))
    assert not prefix_contains(net, parse_addr("10.8.2.1"))
    assert not prefix_contains(net, parse_addr("::ffff:10.8.1.1"))
    assert prefix_contains(parse_prefix("::/0"), parse_addr("fd00::1"))
    assert not prefix_contains(parse_prefix("fe80::/10"), parse_addr("fe80::1%eth0"))
    with pytest.raises(
        AddrSyntaxError, match=r'^netip.ParsePrefix\("1.2.3.4/-1"\): bad bits after slash: "-1"$'
    ):
        parse_prefix("1.2.3.4/-1")
    with pytest.raises(AddrSyntaxError, match="prefix length out of range"):
        parse_prefix("::/129")


# --- request-URI paths --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("http://payments-api.payments.svc.cluster.local:8080/v1/charges", "/v1/charges"),
        ("http://h:8080/v1/refunds?limit=10", "/v1/refunds"),
        ("/v1/a%2Fb", "/v1/a/b"),
        ("http://h/p#frag", "/p#frag"),
        ("http://user@h/p", "/p"),
        ("http://h", ""),
        ("mailto:someone", ""),
        ("*", "*"),
        ("//h/p", "//h/p"),
        ("relative/path", None),
        ("http://h:port/p", None),
        ("http://h/%zz", None),
        ("http://[::1/p", None),
        ("http://h/p\x7f", None),
        (":nothing", None),
        ("", None),
    ],
)
def test_request_uri_path(url: str, path: str | None) -> None:
    assert request_uri_path(url) == path


def test_go_quoting() -> None:
    assert go_quote('a"b\\c\n\x01é') == '"a\\"b\\\\c\\n\\x01é"'
    assert go_quote_rune(" ") == "' '"
    assert go_quote_rune("'") == "'\\''"
    assert go_quote_rune("\t") == "'\\t'"
