"""`observe --input-file` with line templates: the same bytes as decoding every line, and the same
warnings, whatever the holes hold (see hubblepy.codec.templates)."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest

from hubblepy.cli import observe
from hubblepy.codec import ResponseDecoder
from hubblepy.codec.templates import TemplateCache, cut
from hubblepy.printer import Printer
from hubblepy.printer.printer import PrintOptions
from hubblepy.sample.flowgen import mixed_flows

FLOW = {
    "flow": {
        "time": "2024-07-04T12:00:01.123456789Z",
        "uuid": "5b1f7c1e-0000-4000-8000-000000000001",
        "verdict": "FORWARDED",
        "IP": {"source": "10.1.0.5", "destination": "10.1.0.6", "ipVersion": "IPv4"},
        "l4": {"TCP": {"source_port": 5555, "destination_port": 5432, "flags": {"SYN": True}}},
        "source": {"identity": 4242, "namespace": "shop", "pod_name": "web-1"},
        "destination": {"identity": 4343, "namespace": "shop", "pod_name": "db-0"},
        "node_name": "lab-worker",
        "event_type": {"type": 4},
        "is_reply": False,
        "Summary": "TCP Flags: SYN",
    },
    "node_name": "lab-worker",
    "time": "2024-07-04T12:00:01.123456789Z",
}


def _line(**changes: object) -> bytes:
    record = orjson.loads(orjson.dumps(FLOW))
    for path, value in changes.items():
        *parents, name = path.split("__")
        target = record
        for parent in parents:
            target = target[parent]
        target[name] = value
    return orjson.dumps(record)


def _run(path: Path, *args: str) -> tuple[bytes, list[str], int]:
    stdout = io.BytesIO()
    err = io.BytesIO()
    stderr = io.TextIOWrapper(err, write_through=True)
    status = observe.run(["--input-file", str(path), *args], {}, io.BytesIO(), stdout, stderr)
    warnings = [line.split(" level=", 1)[1] for line in err.getvalue().decode().splitlines()]
    return stdout.getvalue(), warnings, status


def _reference(lines: list[bytes], options: PrintOptions) -> bytes:
    """Every line decoded and printed, without templates."""
    out = io.BytesIO()
    printer = Printer(options, out, io.BytesIO())
    decoder = ResponseDecoder()
    for line in lines:
        record = decoder.decode(line)
        printer.write(record, line if decoder.last_was_canonical else None)
    printer.close()
    return out.getvalue()


@pytest.fixture(scope="module")
def generated() -> list[bytes]:
    from hubblepy.codec import encode_response

    return [encode_response(record) for record in mixed_flows(3000, seed=7)]


@pytest.mark.parametrize(
    ("args", "options"),
    [
        ((), PrintOptions()),
        (("-o", "json"), PrintOptions(output="json")),
        (("-o", "jsonpb"), PrintOptions(output="json")),
        (("--color", "always", "--print-node-name"), PrintOptions(color=True, print_node_name=True)),
        (
            ("--numeric", "--time-format", "RFC3339Nano"),
            PrintOptions(numeric=True, time_format="RFC3339Nano"),
        ),
        (("--print-policy-names",), PrintOptions(print_policy_names=True)),
        (("-o", "dict"), PrintOptions(output="dict")),
    ],
)
def test_generated_flows_print_as_without_templates(
    tmp_path: Path, generated: list[bytes], args: tuple[str, ...], options: PrintOptions
) -> None:
    path = tmp_path / "flows.jsonl"
    path.write_bytes(b"\n".join(generated) + b"\n")
    stdout, warnings, status = _run(path, *args)
    assert (status, warnings) == (0, [])
    assert stdout == _reference(generated, options)


def test_most_generated_lines_take_the_template_path(generated: list[bytes]) -> None:
    cache = TemplateCache()
    decoder = ResponseDecoder()
    hits = 0
    for line in generated:
        found = cache.match(line)
        if found is None:
            cache.learn(line, decoder.decode(line))
            continue
        hits += 1
        template, values = found
        assert orjson.loads(line) == decoder.decode(line) and decoder.last_was_canonical
        assert b"".join(_interleave(template.texts, values)) == line
    assert hits > len(generated) // 2


def _interleave(texts: tuple[bytes, ...], values: list[bytes]) -> list[bytes]:
    parts = [texts[0]]
    for value, text in zip(values, texts[1:], strict=True):
        parts += [value, text]
    return parts


def test_bad_hole_values_are_decoded_and_warned_about(tmp_path: Path) -> None:
    good = [_line(flow__time=f"2024-07-04T12:00:0{i}.123456789Z") for i in range(3)]
    # Same texts around the holes as the good lines, but a value that is not canonical or not valid.
    invalid_date = good[0].replace(b"2024-07-04T12:00:00.1", b"2024-02-30T12:00:00.1", 1)
    leading_zero = good[0].replace(b'"source_port":5555', b'"source_port":05555')
    zero_port = good[0].replace(b'"source_port":5555', b'"source_port":0')
    escaped_uuid = good[0].replace(b'"5b1f7c1e', b'"\\u0035b1f7c1e')
    trailing_zeros = good[0].replace(b".123456789Z", b".123000000Z")
    path = tmp_path / "flows.jsonl"
    lines = [*good, invalid_date, leading_zero, zero_port, escaped_uuid, trailing_zeros]
    path.write_bytes(b"\n".join(lines) + b"\n")
    stdout, warnings, _ = _run(path)
    assert len(warnings) == 2
    assert "line_number=4" in warnings[0] and "line_number=5" in warnings[1]
    kept = [*good, zero_port, escaped_uuid, trailing_zeros]
    assert stdout == _reference(kept, PrintOptions())
    stdout, _, _ = _run(path, "-o", "json")
    assert stdout == _reference(kept, PrintOptions(output="json"))
    assert b"\\u0035" not in stdout and b'"source_port":0' not in stdout


def test_lines_a_filter_excludes_are_still_checked(tmp_path: Path) -> None:
    """Upstream decodes every line before filtering: warnings and the lenient switch still happen."""
    path = tmp_path / "flows.jsonl"
    unknown = _line(flow__verdict="FORWARDED").replace(b'"verdict"', b'"bogus":1,"verdict"')
    wrong_type = _line().replace(b'"is_reply":false', b'"is_reply":"no"')
    later_unknown = _line(flow__verdict="DROPPED").replace(b'"verdict"', b'"other":2,"verdict"')
    lines = [_line(), _line(), unknown, wrong_type, b"[]", later_unknown, _line(flow__verdict="DROPPED")]
    path.write_bytes(b"\n".join(lines))  # no final newline
    stdout, warnings, status = _run(path, "--verdict", "DROPPED")
    assert status == 0
    assert warnings[0].startswith('WARN msg="unknown field detected')
    assert 'unknown field \\"bogus\\""' in warnings[0]
    assert "line_number=4" in warnings[1] and "line_number=5" in warnings[2]
    assert len(warnings) == 3  # the later unknown field is decoded leniently, silently
    dropped = _line(flow__verdict="DROPPED")
    assert stdout == _reference([dropped, dropped], PrintOptions())


def test_crlf_and_no_final_newline(tmp_path: Path, generated: list[bytes]) -> None:
    path = tmp_path / "flows.jsonl"
    path.write_bytes(b"\r\n".join(generated[:500]))
    stdout, warnings, _ = _run(path)
    assert warnings == []
    assert stdout == _reference(generated[:500], PrintOptions())


def test_escapes_and_huge_summaries_stay_in_the_text(tmp_path: Path) -> None:
    quoted = _line(flow__Summary='DNS Answer "10.0.0.1" <ok> & more')
    huge = _line(flow__Summary="x" * 60000)
    ports = [_line(flow__l4__TCP__source_port=port, flow__Summary=f"port {port}") for port in (5555, 6, 7)]
    lines = [quoted, quoted, quoted, huge, huge, huge, *ports, *ports]
    path = tmp_path / "flows.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    for args, options in (((), PrintOptions()), (("-o", "json"), PrintOptions(output="json"))):
        stdout, warnings, _ = _run(path, *args)
        assert warnings == []
        assert stdout == _reference(lines, options)


def test_cut_finds_the_holes() -> None:
    key, values = cut(_line())
    assert values == [
        b'"2024-07-04T12:00:01.123456789Z"',
        b'"5b1f7c1e-0000-4000-8000-000000000001"',
        b"5555",
        b"5432",
        b"TCP Flags: SYN",
        b'"2024-07-04T12:00:01.123456789Z"',
    ]
    assert key[1] == b'{"flow":{"time":' and key[-1] == b"}"
    assert cut(b'{"flow":{"time":"2024-13-01T00:00:00Z"}}') is None
    assert cut(b"[1,2]") is None


def test_a_template_is_only_kept_when_its_holes_check_out() -> None:
    cache = TemplateCache()
    line = _line()
    record = orjson.loads(line)
    cache.learn(line, record)
    assert record == orjson.loads(line)  # the check restores what it changed
    assert cache.match(_line(flow__uuid="another")) is not None
    # A line holding a sentinel value gets no template (the check could not tell the holes apart).
    odd = _line(flow__source__pod_name="~summary-hole~")
    cache.learn(odd, orjson.loads(odd))
    assert cache.match(odd) is None
