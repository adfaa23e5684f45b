"""Node-status records go to stderr (as upstream hubble prints them); dict separators count stdout and stderr together."""

from __future__ import annotations

import orjson

from hubblepy.printer import PrintOptions, join_with_cutoff

UNAVAILABLE = {
    "node_status": {
        "state_change": "NODE_UNAVAILABLE",
        "node_names": [f"node-{i:02}.example" for i in range(8)],
    },
    "node_name": "relay-0",
    "time": "2024-07-04T12:00:00Z",
}
ERROR = {
    "node_status": {"state_change": "NODE_ERROR", "node_names": ["x"], "message": 'said "no"\ttab'},
    "time": "2024-07-04T12:00:02Z",
}
EMPTY_UNAVAILABLE = {"node_status": {"state_change": "NODE_UNAVAILABLE"}, "time": "2024-07-04T12:00:03Z"}
CONNECTED = {
    "node_status": {"state_change": "NODE_CONNECTED", "node_names": ["a", "b"]},
    "time": "2024-07-04T12:00:04Z",
}
GONE = {"node_status": {"state_change": "NODE_GONE", "node_names": ["a"]}, "time": "2024-07-04T12:00:05Z"}
FLOW = {
    "flow": {"time": "2024-07-04T12:00:01Z", "verdict": "FORWARDED", "Summary": "s"},
    "time": "2024-07-04T12:00:01Z",
}


def test_compact_texts_on_stderr(render) -> None:
    out, err = render(PrintOptions(), [UNAVAILABLE, ERROR, EMPTY_UNAVAILABLE, CONNECTED, GONE])
    assert out == ""
    assert err == (
        "Jul  4 12:00:00.000 [relay-0]: 8 nodes are unavailable: node-00.example, node-01.example (and 6 more)\n"
        'Jul  4 12:00:02.000 []: Error "said \\"no\\"\\ttab" on 1 nodes: x\n'
        "Jul  4 12:00:03.000 []: 0 nodes are unavailable: \n"
    )


def test_debug_prints_every_state(render) -> None:
    _, err = render(PrintOptions(output="table", debug=True), [CONNECTED, GONE])
    assert err == (
        "Jul  4 12:00:04.000 []: Receiving flows from 2 nodes: a, b\n"
        "Jul  4 12:00:05.000 []: 1 nodes removed from cluster: a\n"
    )


def test_silent_errors_drop_everything(render) -> None:
    for output in ("compact", "dict", "table", "json"):
        out, err = render(PrintOptions(output=output, silent_errors=True, debug=True), [UNAVAILABLE, ERROR])
        assert (out, err) == ("", "")


def test_json_node_status_on_stderr(render) -> None:
    out, err = render(PrintOptions(output="json"), [ERROR, CONNECTED, FLOW])
    assert out == orjson.dumps(FLOW).decode() + "\n"
    assert err == (
        '{"node_status":{"state_change":"NODE_ERROR","node_names":["x"],"message":"said \\"no\\"\\ttab"},'
        '"time":"2024-07-04T12:00:02Z"}\n'
    )


def test_legacy_json_mode_prints_no_node_status(render) -> None:
    out, err = render(PrintOptions(output="json", legacy_json=True), [ERROR, FLOW])
    assert (out, err) == (orjson.dumps(FLOW["flow"]).decode() + "\n", "")


def test_table_header_comes_with_the_first_row_not_the_node_status(render) -> None:
    out, err = render(PrintOptions(output="table"), [UNAVAILABLE, FLOW])
    assert err.startswith("Jul  4 12:00:00.000 [relay-0]: 8 nodes")
    assert out.splitlines()[0].startswith("TIMESTAMP ")
    assert render(PrintOptions(output="table"), [UNAVAILABLE]) == ("", err)


def test_dict_node_status_first_makes_stdout_start_with_a_separator(render) -> None:
    out, err = render(PrintOptions(output="dict"), [ERROR, FLOW, EMPTY_UNAVAILABLE])
    assert err == (
        "  TIMESTAMP: Jul  4 12:00:02.000\n"
        "      STATE: NODE_ERROR\n"
        "      NODES: x\n"
        '    MESSAGE: "said \\"no\\"\\ttab"\n'
        "------------\n"
        "  TIMESTAMP: Jul  4 12:00:03.000\n"
        "      STATE: NODE_UNAVAILABLE\n"
        "      NODES: \n"
        "    MESSAGE: N/A\n"
    )
    assert out == (
        "------------\n"
        "  TIMESTAMP: Jul  4 12:00:01.000\n"
        "     SOURCE: \n"
        "DESTINATION: \n"
        "       TYPE: UNKNOWN\n"
        "    VERDICT: FORWARDED\n"
        "    SUMMARY: s\n"
    )


def test_unprinted_and_empty_records_do_not_count_for_dict_separators(render) -> None:
    out, err = render(PrintOptions(output="dict"), [CONNECTED, {}, {"node_name": "x"}, FLOW])
    assert err == ""
    assert out.startswith("  TIMESTAMP: ")


def test_join_with_cutoff_counts_bytes_and_always_keeps_the_first() -> None:
    assert join_with_cutoff(["a" * 60, "b"]) == "a" * 60 + " (and 1 more)"
    assert join_with_cutoff(["a" * 45, "b"]) == "a" * 45 + ", b"
    assert join_with_cutoff(["a" * 46, "b"]) == "a" * 46 + " (and 1 more)"
    assert join_with_cutoff(["a" * 46]) == "a" * 46
    assert join_with_cutoff(["a" * 22, "b" * 22, "c"]) == "a" * 22 + ", " + "b" * 22 + " (and 1 more)"
    assert join_with_cutoff(["é" * 12, "b" * 22]) == "é" * 12 + ", " + "b" * 22
    assert join_with_cutoff(["é" * 13, "b" * 22]) == "é" * 13 + " (and 1 more)"
    assert join_with_cutoff([]) == ""


def test_stdout_is_flushed_before_stderr(tmp_path) -> None:
    from hubblepy.printer import Printer

    log = tmp_path / "both"
    with open(log, "wb") as stream:
        printer = Printer(PrintOptions(), stream, stream)
        printer.write(FLOW)
        printer.write(UNAVAILABLE)
        printer.write(FLOW)
        printer.close()
    lines = log.read_text().splitlines()
    assert [line[:30] for line in lines] == [
        "Jul  4 12:00:01.000:  (unknown",
        "Jul  4 12:00:00.000 [relay-0]:",
        "Jul  4 12:00:01.000:  (unknown",
    ]


def test_table_is_held_back_until_close_and_close_is_idempotent() -> None:
    import io

    from hubblepy.printer import Printer

    out = io.BytesIO()
    printer = Printer(PrintOptions(output="table"), out, io.BytesIO())
    try:
        printer.write(FLOW)
        printer.flush()
        assert out.getvalue() == b""
        raise RuntimeError("reading stopped")
    except RuntimeError:
        pass
    finally:
        printer.close()
    printer.close()
    assert out.getvalue().decode() == (
        "TIMESTAMP             SOURCE   DESTINATION   TYPE      VERDICT     SUMMARY\n"
        "Jul  4 12:00:01.000                          UNKNOWN   FORWARDED   s\n"
    )
