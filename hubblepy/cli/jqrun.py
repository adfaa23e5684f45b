"""``--jq``: one jq program run on one record's JSON text, for file and live input alike."""

from __future__ import annotations

import orjson


def jq_results(program, text: str) -> tuple[list[bytes], str | None]:  # noqa: ANN001 - jq program
    """The output lines of ``program`` on one record's JSON (strings raw, like ``jq -r``) and its error."""
    try:
        results = program.input_text(text).all()
    except ValueError as exc:
        return [], (str(exc).splitlines() or ["jq error"])[0]
    return [
        result.encode() + b"\n" if type(result) is str else orjson.dumps(result) + b"\n" for result in results
    ], None
