"""``report.html``: one self-contained page for an assessor (no scripts, no external assets).

It states the question asked, the answer in numbers, the completeness of the export in plain words,
the drops grouped by source, destination, port and policy, the policies in force and the command that
verifies the bundle.
"""

from __future__ import annotations

import html
import shlex
from typing import Any

from hubblepy.evidence.summary import FlowSummary

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:70em;color:#111;line-height:1.4}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;padding:.25em .6em;text-align:left}
th{background:#eee}td.n{text-align:right}code,pre{background:#f4f4f4;padding:.1em .3em}
.ok{color:#064;font-weight:bold}.bad{color:#a00;font-weight:bold}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _table(header: list[str], rows: list[list[Any]], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    out = ["<table><tr>", *(f"<th>{_e(h)}</th>" for h in header), "</tr>"]
    for row in rows:
        cells = (
            f'<td class="n">{_e(c)}</td>' if i in numeric else f"<td>{_e(c)}</td>" for i, c in enumerate(row)
        )
        out += ["<tr>", *cells, "</tr>"]
    out.append("</table>")
    return "".join(out)


def completeness_sentences(manifest: dict[str, Any]) -> list[str]:
    """Plain statements: complete, or what was missing and why."""
    comp = manifest.get("completeness") or {}
    if comp.get("complete"):
        sentences = ["Complete: every node asked answered, no events were reported lost, and the start of the "
                     "time window was still held by every node."]  # fmt: skip
    else:
        sentences = ["NOT complete:"]
    sentences += [f"- {problem}" for problem in comp.get("problems", [])]
    sentences += [f"Note: {note}" for note in comp.get("notes", [])]
    return sentences


def render_report(manifest: dict[str, Any], summary: FlowSummary) -> bytes:
    query = manifest.get("query") or {}
    parts = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        "<title>hubblepy evidence report</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>Network flow evidence</h1>",
        f"<p>Exported {_e(manifest.get('created', ''))} by {_e((manifest.get('tool') or {}).get('name', ''))} "
        f"{_e((manifest.get('tool') or {}).get('version', ''))}.</p>",
        "<h2>The question asked</h2>",
        f"<p>Flows from <b>{_e(query.get('source_text', ''))}</b> matching:</p>",
        f"<pre>{_e(query.get('observe_command', ''))}</pre>",
        f"<p>Time window: since <b>{_e(query.get('since') or 'the oldest flow held')}</b>, until "
        f"<b>{_e(query.get('until') or 'the time of export')}</b>.</p>",
        "<h2>The answer</h2>",
        f"<p><b>{summary.flows}</b> flows matched"
        + (f", from {_e(summary.first_time)} to {_e(summary.last_time)}" if summary.flows else "")
        + f"; {len(summary.lost_events)} lost-events records are among the {summary.lines} lines.</p>",
        _table(["verdict", "flows"], [[v, n] for v, n in sorted(summary.by_verdict.items())], {1}),
        "<h2>Completeness</h2>",
    ]
    comp_ok = bool((manifest.get("completeness") or {}).get("complete"))
    for index, sentence in enumerate(completeness_sentences(manifest)):
        cls = (' class="ok"' if comp_ok else ' class="bad"') if index == 0 else ""
        parts.append(f"<p{cls}>{_e(sentence)}</p>")
    comp = manifest.get("completeness") or {}
    rings = comp.get("rings") or []
    if rings:
        answered = set((comp.get("nodes") or {}).get("answered") or [])
        parts.append(
            _table(
                ["node", "answered", "ring wrapped", "oldest flow held", "node started", "window start held"],
                [
                    [
                        r["node"],
                        "yes" if r["node"] in answered else "NO",
                        "yes" if r["ring_wrapped"] else "no",
                        r["oldest_flow_time"] or "-",
                        r["node_started"] or "-",
                        {True: "yes", False: "NO", None: "-"}[r["window_start_held"]],
                    ]
                    for r in rings
                ],
            )
        )
    parts.append("<h2>Drops (and audited would-be drops) by source, destination, port and policy</h2>")
    if summary.drops:
        rows = [
            [verdict, src, dst, port, policy, count]
            for (verdict, src, dst, port, policy), count in sorted(
                summary.drops.items(), key=lambda item: (-item[1], item[0])
            )
        ]
        parts.append(
            _table(["verdict", "source", "destination", "port", "policy / reason", "flows"], rows, {5})
        )
    else:
        parts.append("<p>No dropped, audited or error flows matched.</p>")
    parts.append("<h2>Policies in force at export</h2>")
    policies = manifest.get("policies") or {}
    parts.append(f"<p>{_e(policies.get('note', ''))}</p>")
    if policies.get("items"):
        parts.append(
            _table(
                ["kind", "namespace", "name", "SHA-256 of the document"],
                [
                    [p["kind"], p["namespace"] or "(cluster-wide)", p["name"], p["sha256"]]
                    for p in policies["items"]
                ],
            )
        )
    fqdn = manifest.get("fqdn_cache") or {}
    parts.append(f"<h2>FQDN cache</h2><p>{_e(fqdn.get('note', 'not recorded'))}</p>")
    integrity = manifest.get("integrity") or {}
    signed = manifest.get("signature")
    command = "hubble evidence verify " + shlex.quote("BUNDLE_DIR")
    if signed:
        command += " --pub-key PUBLIC_KEY.pem"
    parts += [
        "<h2>How to verify this bundle</h2>",
        f"<p>The {integrity.get('lines', 0)} lines of flows.jsonl are bound by a SHA-256 hash chain whose head "
        f"is <code>{_e(integrity.get('chain_head', ''))}</code>."
        + (
            f" The manifest is signed with Ed25519 key <code>{_e(signed.get('public_key', ''))}</code>."
            if signed
            else " The manifest is not signed."
        )  # fmt: skip
        + " On any machine with the hubble CLI (no network needed), run:</p>",
        f"<pre>{_e(command)}</pre>",
        "<p>When nothing was changed it prints one line saying the bundle is intact and exits 0; otherwise "
        "it names the first line of flows.jsonl, the file or the manifest field that changed and exits 1. "
        "See docs/evidence.md in the hubblepy repository for what the bundle proves and what it does not.</p>",
        "</body></html>\n",
    ]
    return "".join(parts).encode()
