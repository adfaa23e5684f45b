"""Compact output of a file without filters (hubblepy.cli.compact_lines): lines that match a checked
template print from their hole values; the output and the warnings are those of decoding every line."""

from __future__ import annotations

import io
import random
import re
from pathlib import Path

import orjson
import pytest
from hubbletest import clean_env, run_hubble

from hubblepy.cli import observe
from hubblepy.cli.file_input import MAX_LINE_BYTES, TOKEN_TOO_LONG, InputError, iter_line_batches
from hubblepy.codec import DecodeError, ResponseDecoder, encode_response
from hubblepy.codec.templates import HTTP_CODE, HTTP_METHOD, HTTP_URL, LATENCY, SUMMARY, TemplateCache, cut
from hubblepy.printer import Printer
from hubblepy.printer.printer import PrintOptions
from hubblepy.sample.flowgen import mixed_flows

RESPONSE = {
    "flow": {
        "time": "2024-07-04T12:00:01.123456789Z",
        "uuid": "5b1f7c1e-0000-4000-8000-000000000001",
        "verdict": "FORWARDED",
        "IP": {"source": "10.1.0.6", "destination": "10.1.0.5", "ipVersion": "IPv4"},
        "l4": {"TCP": {"source_port": 8080, "destination_port": 40000}},
        "source": {"identity": 4343, "namespace": "shop", "pod_name": "api-0"},
        "destination": {"identity": 4242, "namespace": "shop", "pod_name": "web-1"},
        "Type": "L7",
        "node_name": "lab-worker",
        "l7": {
            "type": "RESPONSE",
            "latency_ns": "1500000",
            "http": {"code": 200, "method": "GET", "url": "http://api.shop/v1/items", "protocol": "HTTP/1.1"},
        },
        "event_type": {"type": 129},
        "is_reply": True,
        "Summary": "HTTP/1.1 200 1ms (GET http://api.shop/v1/items)",
    },
    "node_name": "lab-worker",
    "time": "2024-07-04T12:00:01.123456789Z",
}


def _line(**changes: object) -> bytes:
    """RESPONSE with fields changed (``flow__l7__http__code=404``), as canonical JSON."""
    record = orjson.loads(orjson.dumps(RESPONSE))
    for path, value in changes.items():
        *parents, name = path.split("__")
        target = record
        for parent in parents:
            target = target[parent]
        target[name] = value
    return encode_response(record)


def _reference(lines: list[bytes], options: PrintOptions | None = None) -> bytes:
    """Every line decoded and printed from its dict: no templates, no byte formats."""
    out = io.BytesIO()
    printer = Printer(options or PrintOptions(), out, io.BytesIO())
    decoder = ResponseDecoder()
    for line in lines:
        printer.write(decoder.decode(line))
    printer.close()
    return out.getvalue()


def _run(path: Path, *args: str) -> tuple[bytes, list[str]]:
    stdout = io.BytesIO()
    err = io.BytesIO()
    stderr = io.TextIOWrapper(err, write_through=True)
    status = observe.run(["--input-file", str(path), *args], {}, io.BytesIO(), stdout, stderr)
    assert status == 0
    return stdout.getvalue(), [line.split(" level=", 1)[1] for line in err.getvalue().decode().splitlines()]


def _general_path(path: Path, *args: str) -> tuple[bytes, list[str]]:
    """The same run through the general reader (``--first`` takes it), which prints record by record."""
    return _run(path, *args, "--first", "1000000000")


def _write(tmp_path: Path, lines: list[bytes], end: bytes = b"\n") -> Path:
    path = tmp_path / "flows.jsonl"
    path.write_bytes(b"\n".join(lines) + end)
    return path


def _interleave(texts: tuple[bytes, ...], values: list[bytes]) -> bytes:
    parts = [texts[0]]
    for value, text in zip(values, texts[1:], strict=True):
        parts += [value, text]
    return b"".join(parts)


def test_http_code_method_and_url_are_holes() -> None:
    key, values = cut(_line())
    kinds = [kind for kind in range(10) if key[0] >> kind & 1]
    named = dict(zip(kinds, values, strict=True))
    assert named[LATENCY] == b'"1500000"'
    assert (named[HTTP_CODE], named[HTTP_METHOD], named[HTTP_URL]) == (
        b"200",
        b'"GET"',
        b'"http://api.shop/v1/items"',
    )
    assert named[SUMMARY] == b"HTTP/1.1 200 1ms (GET http://api.shop/v1/items)"
    other = _line(flow__l7__http__code=503, flow__l7__http__method="POST", flow__l7__http__url="http://x/y")
    assert cut(other)[0] == key  # the same template


def test_lines_of_one_template_print_as_decoded(tmp_path: Path) -> None:
    lines = []
    for index in range(40):
        method = ("GET", "POST", "DELETE")[index % 3]
        url = f"http://api.shop/v1/items/{index}" + ("/x" * 15000 if index == 7 else "")  # a huge line
        lines.append(
            _line(
                flow__time=f"2024-07-04T12:00:{index:02d}.{index:03d}Z",
                time=f"2024-07-04T12:00:{index:02d}.{index:03d}Z",
                flow__l4__TCP__destination_port=40000 + index,
                flow__l7__latency_ns=str(1000 + index),
                flow__l7__http__code=(200, 404, 503)[index % 3],
                flow__l7__http__method=method,
                flow__l7__http__url=url,
                flow__Summary=f"HTTP/1.1 {index} ({method} {url})",
            )
        )
    lines += [_line(flow__time="2024-07-04T12:01:00Z", time="2024-07-04T12:01:00Z")]  # no fraction
    lines += [_line(flow__time="2024-07-04T12:01:00.000001Z")]  # 6 digits, another response time
    path = _write(tmp_path, lines)
    stdout, warnings = _run(path)
    assert warnings == []
    assert stdout == _reference(lines)
    assert b"Jul  4 12:01:00.000: " in stdout


def test_values_that_are_not_plain_stay_in_the_text_or_are_decoded(tmp_path: Path) -> None:
    good = _line()
    lines = [
        good,
        good,
        _line(flow__l7__http__url="http://api.shop/v1?a=1&b=2"),  # & is written \u0026: in the text
        _line(flow__l7__http__url="http://api.shop/v1?a=1&b=2"),
        _line(flow__l7__http__code=0),  # not written at all
        good.replace(b'"code":200', b'"code":"200"'),  # valid, not canonical: decoded
        good.replace(b'"method":"GET"', b'"method":"\\u0047ET"'),  # valid, not canonical: decoded
        good.replace(b'"code":200', b'"code":0200'),  # not JSON: a warning
        good.replace(b'"code":200', b'"code":-1'),  # not a uint32: a warning
        good.replace(b'"latency_ns":"1500000"', b'"latency_ns":"01500000"'),  # a warning as in Go
        good.replace(b'"method":"GET"', b'"method":"GET","bogus":1'),  # unknown field: warned once
        good.replace(b'"url":', b'"wat":'),  # unknown field again: silently lenient from now on
        good,
    ]
    path = _write(tmp_path, lines)
    stdout, warnings = _run(path)
    assert (stdout, warnings) == _general_path(path)
    bad = [warning for warning in warnings if "Failed to unmarshal" in warning]
    assert [f"line_number={number}" in warning for number, warning in zip((8, 9, 10), bad, strict=True)] == [
        True
    ] * 3
    assert sum("unknown field detected" in warning for warning in warnings) == 1
    printable = [line for number, line in enumerate(lines, 1) if number not in (8, 9, 10)]
    decoder = ResponseDecoder()
    decoder.lenient = True
    out = io.BytesIO()
    printer = Printer(PrintOptions(), out, io.BytesIO())
    for line in printable:
        printer.write(decoder.decode(line))
    printer.close()
    assert stdout == out.getvalue()


@pytest.fixture(scope="module")
def generated() -> list[bytes]:
    return [encode_response(record) for record in mixed_flows(3000, seed=11)]


def test_cut_pieces_always_rebuild_the_line(generated: list[bytes]) -> None:
    """Whatever a line holds, its texts and hole values put together again are the line (the
    template proof needs it), for generated lines and for damaged copies of them."""
    rng = random.Random(5)
    samples = list(generated[:400])
    for line in generated[:300]:
        cut_at = rng.randrange(len(line))
        samples.append(line[:cut_at])
        samples.append(line[:cut_at] + bytes([rng.choice(b'"{},:0\\9 a')]) + line[cut_at + 1 :])
        samples.append(line.replace(b'","', b'" , "', 1))
    found = 0
    for line in samples:
        result = cut(line)
        if result is None:
            continue
        found += 1
        key, values = result
        assert _interleave(key[1:], values) == line
    assert found > len(samples) // 2


def test_a_mixed_file_prints_as_the_general_reader(tmp_path: Path, generated: list[bytes]) -> None:
    lines = list(generated)
    lines.insert(100, b"not json")
    lines.insert(200, b"")
    record = orjson.loads(lines[300])
    record["flow"]["newThing"] = 1
    lines[300] = orjson.dumps(record)
    lines[400] += b"\r"
    path = _write(tmp_path, lines, end=b"")  # no final newline
    for args in ((), ("--print-node-name",), ("--color", "always"), ("--time-format", "RFC3339Milli")):
        stdout, warnings = _run(path, *args)
        assert (stdout, warnings) == _general_path(path, *args)
        assert len(warnings) == 3


def _stderr_lines(stderr: bytes) -> list[str]:
    return [re.sub(r"^time=\S+ ", "", line) for line in stderr.decode().splitlines()]


def test_workers_print_what_decoding_every_line_prints(tmp_path: Path, generated: list[bytes]) -> None:
    lines = list(generated)
    lines.insert(1500, b"[1]")
    path = _write(tmp_path, lines)
    env = clean_env() | {"HUBBLEPY_PARALLEL_MIN_BYTES": "0", "HUBBLEPY_PARALLEL_BLOCK_BYTES": "50000"}
    many = run_hubble(["observe", "--input-file", str(path)], env=env)
    assert many.returncode == 0
    del lines[1500]
    assert many.stdout == _reference(lines)
    warnings = _stderr_lines(many.stderr)
    assert len(warnings) == 1 and "line_number=1501" in warnings[0]


def test_a_template_cache_reports_what_it_tried() -> None:
    cache = TemplateCache()
    line = _line()
    key = cut(line)[0]
    assert not cache.tried(key) and cache.get(key) is None
    template = cache.learn(line, orjson.loads(line), key)
    assert template is not None and cache.get(key) is template and cache.tried(key)
    odd = _line(flow__source__pod_name="~url-hole~")  # holds a sentinel: no template
    odd_key = cut(odd)[0]
    assert cache.learn(odd, orjson.loads(odd)) is None
    assert cache.tried(odd_key) and cache.get(odd_key) is None


def _scanner_lines(data: bytes) -> tuple[list[bytes], bool]:
    """Go's bufio.Scanner lines of ``data`` and whether it stops at a line too long."""
    lines = data.split(b"\n")
    if data.endswith(b"\n") or not data:
        lines.pop()
    out = []
    for line in lines:
        if len(line) > MAX_LINE_BYTES:
            return out, True
        out.append(line[:-1] if line.endswith(b"\r") else line)
    return out, False


@pytest.mark.parametrize("chunk_bytes", [1, 7, 64, 4096, 1 << 20])
def test_the_line_reader_follows_the_scanner_at_any_chunk_size(chunk_bytes: int) -> None:
    rng = random.Random(chunk_bytes)
    pieces = [b"", b"\r", b"\n", b"\r\n", b"\n\n", b"ab", b"a\rb", b"x" * 300]
    for _ in range(60):
        data = b"".join(rng.choice(pieces) for _ in range(rng.randrange(12)))
        if chunk_bytes >= 64 and rng.random() < 0.1:  # (smaller chunks would take long to get there)
            data += b"y" * (MAX_LINE_BYTES + rng.choice((-1, 0, 1))) + rng.choice(
                (b"", b"\r", b"\n", b"\r\nz")
            )
        got: list[bytes] = []
        try:
            for batch in iter_line_batches(io.BytesIO(data), chunk_bytes):
                got += batch
            stopped = False
        except InputError as exc:
            assert str(exc) == TOKEN_TOO_LONG
            stopped = True
        assert (got, stopped) == _scanner_lines(data), data[:80]


def test_cut_gives_the_same_in_its_usual_shape_shortcut() -> None:
    """The shortcut for a 9-digit time and a 36-character UUID at fixed places (taken once the
    time's second was seen) cuts exactly as the general search does (taken the first time)."""
    base = _line(flow__time="2031-05-06T07:08:09.123456789Z")
    variants = [
        base,
        base.replace(b".123456789Z", b".123456000Z"),  # not canonical: no template
        base.replace(b"5b1f7c1e-0000", b"5b1f7c1e\\u0030000"),  # an escape in the UUID
        base.replace(b"5b1f7c1e-0000", b"5b1f7c1e<0000"),  # a character Go escapes
        base.replace(b"5b1f7c1e-0000", b"5b1f7c1e-00000"),  # 37 characters
        base.replace(b".123456789Z", b".12345678Z"),  # 8 digits: not canonical
    ]
    for second, line in enumerate(variants):
        line = line.replace(b"T07:08:09.", f"T07:08:{second + 10}.".encode())  # a second not seen yet
        assert cut(line) == cut(line), line[:100]


def _l4_variants(line: bytes) -> list[bytes]:
    """Copies of a line changed where the L3/L4 shortcut of ``cut`` looks: the ports, the L4
    record, the summary, the final time, an L7 record, and the byte ranges of the fixed places."""
    ports = re.search(rb'"source_port":(\d+),"destination_port":(\d+)', line)
    variants = [
        line.replace(b'"l4":{"TCP"', b'"l4":{"ICMPv4"', 1),
        line.replace(b'"l4":{"TCP"', b'"l4":{"SCTP"', 1),
        line.replace(b'"l4":{"TCP"', b'"l4":{"tcp"', 1),
        line.replace(b'"l4":{"TCP":{', b'"l4":{"TCP":{"x":1,', 1),
        line.replace(b',"Summary":"', b',"Summary":"\\u003c', 1),
        line.replace(b',"Summary":"', b',"Summary":"<', 1),
        line.replace(b',"Summary":"', b',"Summary":"', 1).replace(b'","node_name"', b'" ,"node_name"', 1),
        line.replace(b',"Summary":"', b',"summary":"', 1),
        line.replace(b'"Type":"L3_L4"', b'"l7":{"type":"REQUEST"},"Type":"L3_L4"', 1),
        line[:-3] + b'8Z"}',  # another response time
        line[:-2] + b" }",
        line[:-1],
        line + b" ",
    ]
    if ports is not None:
        source, destination = ports.group(1), ports.group(2)
        for value in (b"0", b"08", b"1234567890", b"123456789", b"-1", b"1.0", b'"1"', b""):
            variants.append(line.replace(b'"source_port":' + source, b'"source_port":' + value, 1))
            variants.append(
                line.replace(b'"destination_port":' + destination, b'"destination_port":' + value, 1)
            )
        variants.append(
            line.replace(b'"destination_port":' + destination + b",", b'"destination_port":1}', 1)
        )
        variants.append(line.replace(b'"source_port":' + source + b",", b"", 1))
        variants.append(line.replace(b',"destination_port":' + destination, b"", 1))
    for at in (16, 17, 36, 37, 43, 45, 46, 47, 56, 57, 92, 93, 94):
        for byte in (b"0", b"9", b".", b'"', b"<", b"\\"):
            variants.append(line[:at] + byte + line[at + 1 :])
    return variants


def test_the_l3_l4_shortcut_of_cut_cuts_as_the_general_search(generated: list[bytes]) -> None:
    """``cut``'s shortcut for the usual L3/L4 line gives exactly what the general search gives,
    for generated lines (all shapes) and for copies changed where the shortcut looks."""
    from hubblepy.codec.templates import _PORTS_SUMMARY_KINDS, _cut_general

    samples = list(generated)
    for line in generated[:300]:
        samples += _l4_variants(line)
    shortcut = 0
    for line in samples:
        cut(line)  # the first time a second is seen, the general search learns it
        expected = _cut_general(line)
        assert cut(line) == expected, line[:120]
        shortcut += expected is not None and expected[0][0] == _PORTS_SUMMARY_KINDS
        if expected is not None:
            assert _interleave(expected[0][1:], expected[1]) == line
    assert shortcut > len(generated) // 2


def _adversarial_variants(line: bytes) -> list[bytes]:
    """Copies of a line that a quick template must not vouch for as they are (or must print right):
    escapes, keys reordered, fields missing or added, texts changed at the same length, L7 holes
    that are not canonical, IPv6 addresses."""
    record = orjson.loads(line)
    flow = record["flow"]
    variants = [
        line.replace(b',"Summary":"', b',"Summary":"\\"', 1),  # an escaped quote in the summary
        line.replace(b',"Summary":"', b',"Summary":"\\u0041', 1),  # a unicode escape
        line.replace(b',"Summary":"', b',"Summary":"\\u003c', 1),
        line.replace(b'"namespace":"', b'"namespace":"\\u0061', 1),  # escape in a text
        line[:57] + b"\\u0030" + line[63:],  # an escape in the UUID, same length
        line[:57] + b"<" + line[58:],  # a character Go escapes, same length
        line.replace(line[16:48], line[16:43] + b'000Z"'),  # both times' fractions not canonical
        line.replace(line[16:48], b'"2026-13' + line[24:48]),  # both times: no such month
        line.replace(line[16:48], b'"2026-02-30' + line[27:48]),  # no such day
        line.replace(line[16:48], line[16:28] + b"24" + line[30:48]),  # no such hour
        line.replace(line[16:48], line[16:34] + b"60" + line[36:48]),  # a leap second
        line.replace(line[16:48], line[16:35] + b'9.1Z"'),  # other fraction lengths
        line.replace(b'},"node_name":"', b'},"node_namf":"', 1),  # an unknown field after the flow
        line.replace(b'},"node_name":"', b'},"node_name":"\\u0041', 1),
        line[:36] + b"," + line[37:],
        line.replace(b'"verdict":"FORWARDED"', b'"verdict":"FORWARDEX"', 1),  # same length, unknown
        line.replace(b'"verdict":"DROPPED"', b'"verdict":"DROPPEX"', 1),
        line.replace(b'"identity":', b'"identity":0', 1),  # a leading zero in a text
        line.replace(b"10.244.", b"10.245.", 1),  # another address, same length
        line.replace(b'"IPv4"', b'"IPv6"', 1),
        line.replace(b'"is_reply":false', b'"is_reply":true', 1),
        line.replace(b'"is_reply":true', b'"is_reply":false', 1),
        line.replace(b'"TCP":{"source_port"', b'"UDP":{"source_port"', 1),
        line.replace(b'"destination_port":', b'"destination_port": ', 1),
        line.replace(b'"latency_ns":"', b'"latency_ns":"0', 1),  # a leading zero in a hole
        line.replace(b'"latency_ns":"', b'"latency_ns":"-', 1),
        line.replace(b'"code":', b'"code":0', 1),
        line.replace(b'"code":', b'"code":"', 1),
        line.replace(b'"method":"', b'"method":"\\"', 1),
        line.replace(b'"url":"', b'"url":"<', 1),
        line.replace(b'"type":"REQUEST"', b'"type":"RESPONSE"', 1),
        line.replace(b'"http":{', b'"http":{"code":200,', 1),
        line.replace(b'"dns":{', b'"dns":{"rcode":1,', 1),
        line[:-34] + line[-33:],  # the time's text one byte short
        line[:-2] + b'1"}',  # the response time differs from the flow's
        line[:-32] + b"2026-13" + line[-25:],  # the response time: no such month
        line[:-14] + b"1" + line[-13:],  # the response time: another second
        re.sub(rb'("method":")[A-Z]', rb"\1<", line, count=1),  # a character Go escapes, same length
        re.sub(rb'("url":")[a-z]', rb"\1<", line, count=1),
        re.sub(rb'("latency_ns":")[0-9]', rb"\1x", line, count=1),
        re.sub(rb'("code":)[0-9]', rb"\1x", line, count=1),
        re.sub(rb'("source_port":)[0-9]', rb"\1x", line, count=1),
        line.replace(b'","uuid":"', b'","uuid":"x', 1),  # a 37-character UUID
    ]
    for key in ("IP", "l4", "source", "destination", "Summary", "l7", "is_reply", "node_name"):
        if key in flow:
            changed = orjson.loads(line)
            del changed["flow"][key]  # a field missing
            variants.append(encode_response(changed))
            changed = orjson.loads(line)
            value = changed["flow"].pop(key)
            changed["flow"]["zz"] = 1
            changed["flow"][key] = value  # an unknown field, and the field moved to the end
            variants.append(orjson.dumps(changed))
            changed = orjson.loads(line)
            value = changed["flow"].pop(key)
            changed["flow"][key] = value  # reordered: valid JSON, not canonical
            variants.append(orjson.dumps(changed))
    if "IP" in flow:
        changed = orjson.loads(line)
        changed["flow"]["IP"] = {"source": "fd00::10", "destination": "fd00::2", "ipVersion": "IPv6"}
        variants.append(encode_response(changed))
    return [variant for variant in variants if variant != line]


def test_the_quick_path_prints_adversarial_lines_as_decoding_them(generated: list[bytes]) -> None:
    """Once every generated template is learned (and most lines take the quick path), each changed
    copy of a line prints what decoding it prints; a copy that is not a canonical line of a learned
    template never takes the quick path."""
    from hubblepy.cli.compact_lines import CompactLines

    compact = CompactLines(TemplateCache(), observe._warn_bad_line)
    out, err = io.BytesIO(), io.BytesIO()
    printer = Printer(PrintOptions(), out, err)
    decoder = ResponseDecoder()
    warnings: list[str] = []
    compact.print_lines(generated, 1, decoder, printer, warnings.append)
    printer.flush()
    before = compact.general_lines
    out.seek(0)
    out.truncate()
    compact.print_lines(generated, 1, decoder, printer, warnings.append)
    printer.flush()
    assert out.getvalue() == _reference(generated)
    assert compact.general_lines - before < len(generated) // 20  # the quick path takes the rest
    shapes = {}
    for line in generated:
        shapes.setdefault((b'"l7"' in line, b'"http"' in line, b'"latency_ns"' in line), line)
    assert len(shapes) >= 4
    checked = declined = 0
    for line in list(shapes.values()) + generated[:200:7]:
        for variant in _adversarial_variants(line):
            out.seek(0)
            out.truncate()
            before = compact.general_lines
            warned: list[str] = []
            compact.print_lines(
                [variant], 1, ResponseDecoder(on_unknown_field=warned.append), printer, warned.append
            )
            printer.flush()
            reference = io.BytesIO()
            expected = Printer(PrintOptions(), reference, io.BytesIO())
            expected_warnings: list[str] = []
            one = ResponseDecoder(on_unknown_field=expected_warnings.append)
            try:
                expected.write(one.decode(variant))
                canonical = one.last_was_canonical
            except DecodeError:
                canonical = False
                expected_warnings.append("Failed to unmarshal")
            expected.close()
            assert out.getvalue() == reference.getvalue(), variant
            assert len(warned) == len(expected_warnings), variant
            assert all(want in got for got, want in zip(warned, expected_warnings, strict=True)), variant
            if not canonical:  # bad or not canonical: no template vouches for it
                assert compact.general_lines == before + 1, variant
                declined += 1
            checked += 1
    assert checked > 100 and declined > 100
