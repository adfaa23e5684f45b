"""The Go-compatible helpers: tab writer, timestamp layouts, terminal escaping, strconv.Quote, path.Join."""

from __future__ import annotations

import pytest

from hubblepy.printer.escape import escape_terminal, go_path_join, go_quote
from hubblepy.printer.tabwriter import TabWriter
from hubblepy.printer.timefmt import make_timestamp_formatter, resolve_time_format


def _tabulate(*chunks: str) -> str:
    out: list[str] = []
    writer = TabWriter(out.append)
    for chunk in chunks:
        writer.write(chunk)
    writer.flush()
    return "".join(out)


def test_tabwriter_pads_by_three_over_column_blocks() -> None:
    assert _tabulate("a\tbbbb\tc\n", "aaaa\tb\tlast cell is never padded\n") == (
        "a      bbbb   c\naaaa   b      last cell is never padded\n"
    )


def test_tabwriter_counts_code_points_and_empty_columns() -> None:
    assert _tabulate("é\t\tx\n", "ab\t\ty\n") == "é    " + "   " + "x\nab   " + "   " + "y\n"


def test_tabwriter_line_with_fewer_cells_ends_the_block() -> None:
    text = _tabulate("aaaaaa\tb\tc\n", "x\ty\n", "z\n", "q\tr\ts\n")
    assert text == "aaaaaa   b   c\nx        y\nz\nq   r   s\n"


def test_tabwriter_form_feed_and_vertical_tab() -> None:
    assert _tabulate("aaaaaa\tb\n", "x\fy\tz\n", "qq\vw\n") == "aaaaaa   b\nx\ny    z\nqq   w\n"


def test_tabwriter_holds_output_until_flush_and_flushes_unterminated_text() -> None:
    out: list[str] = []
    writer = TabWriter(out.append)
    writer.write("a\tb\nc\td\n")
    assert out == []
    writer.write("tail")
    writer.flush()
    assert "".join(out) == "a   b\nc   d\ntail"


def test_tabwriter_single_cell_line_flushes_early() -> None:
    out: list[str] = []
    writer = TabWriter(out.append)
    writer.write("a\tb\nline\n")
    assert "".join(out) == "a   b\nline\n"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("StampMilli", "Jul  4 12:00:16.999"),
        ("stampmilli", "Jul  4 12:00:16.999"),
        ("Kitchen", "Jul  4 12:00:16.999"),
        ("", "Jul  4 12:00:16.999"),
        ("RFC3339", "2024-07-04T12:00:16Z"),
        ("rfc3339milli", "2024-07-04T12:00:16.999Z"),
        ("RFC3339Micro", "2024-07-04T12:00:16.999999Z"),
        ("RFC3339NANO", "2024-07-04T12:00:16.999999999Z"),
        ("YearMonthDay", "2024-07-04"),
        ("YearMonthDayHour", "2024-07-04T12Z"),
        ("YearMonthDayHourMinute", "2024-07-04T12:00Z"),
        ("RFC1123Z", "Thu, 04 Jul 2024 12:00:16 +0000"),
    ],
)
def test_timestamps_are_truncated(name: str, expected: str) -> None:
    assert make_timestamp_formatter(name)("2024-07-04T12:00:16.999999999Z") == expected


def test_timestamp_trailing_zero_rules_and_invalid_values() -> None:
    milli = make_timestamp_formatter("RFC3339Milli")
    nano = make_timestamp_formatter("RFC3339Nano")
    stamp = make_timestamp_formatter("StampMilli")
    assert milli("2024-02-29T23:59:50.140Z") == "2024-02-29T23:59:50.14Z"
    assert milli("2024-02-29T23:59:50.000100Z") == "2024-02-29T23:59:50Z"
    assert nano("2024-02-29T23:59:50.000100Z") == "2024-02-29T23:59:50.0001Z"
    assert stamp("2024-02-29T23:59:50Z") == "Feb 29 23:59:50.000"
    assert stamp("2024-03-01T00:00:05.1Z") == "Mar  1 00:00:05.100"
    assert stamp("2024-07-04T14:00:00.123+02:00") == "Jul  4 12:00:00.123"
    assert stamp("2024-02-30T00:00:00Z") == "N/A"
    assert stamp("2024-02-29 23:59:50Z") == "N/A"
    assert stamp(None) == "N/A"
    assert stamp("") == "N/A"
    assert resolve_time_format("rfc1123z") == "RFC1123Z"


def test_escape_terminal() -> None:
    assert escape_terminal("plain", False) == "plain"
    assert escape_terminal("a\x1b[31mb\rc", False) == "a^[[31mb\\rc"
    assert escape_terminal("a\x1b[31mb\x1b[1mc\x1b[0m\x1b[37m\x1b", True) == "a\x1b[31mb^[[1mc\x1b[0m^[[37m^["
    assert escape_terminal("\x1b[34m\x1b[36m\x1b[30m", True) == "\x1b[34m\x1b[36m^[[30m"


def test_go_quote() -> None:
    assert go_quote('said "no"\ttab') == '"said \\"no\\"\\ttab"'
    assert go_quote("é\x00\x7f\u2028\U0001f600\\") == '"é\\x00\\x7f\\u2028\U0001f600\\\\"'
    assert go_quote("\a\b\f\n\r\v\x1b") == '"\\a\\b\\f\\n\\r\\v\\x1b"'
    assert go_quote("\u00a0") == '"\\u00a0"'


def test_go_path_join() -> None:
    assert go_path_join("shop", "web-1") == "shop/web-1"
    assert go_path_join("", "web-1") == "web-1"
    assert go_path_join("a", "../b") == "b"
    assert go_path_join("a", "b/") == "a/b"
    assert go_path_join("", "./x") == "x"
    assert go_path_join(".", "x") == "x"
    assert go_path_join("a", "..") == "."
