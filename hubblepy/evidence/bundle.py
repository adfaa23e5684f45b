"""Writing a bundle: chain, policy documents, report, manifest and signature around ``flows.jsonl``.

The caller has already written ``flows.jsonl`` (with the observe machinery) into the bundle directory
and gathered the query and completeness facts; :func:`finish_bundle` adds everything else. The
manifest is written last, so a bundle without ``manifest.json`` is visibly unfinished.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hubblepy.evidence import (
    BUNDLE_FORMAT,
    CHAIN_FILE,
    FLOWS_FILE,
    MANIFEST_FILE,
    POLICIES_DIR,
    REPORT_FILE,
    SIGNATURE_FILE,
)
from hubblepy.evidence.chain import chain_head, chain_rows, format_chain_file, split_flow_lines
from hubblepy.evidence.summary import FlowSummary, summarize


class BundleError(Exception):
    """The bundle cannot be written; one line for the user."""


@dataclass
class PolicyDocument:
    """One policy in force: where it came from and its document (as loaded from YAML)."""

    kind: str
    namespace: str
    name: str
    document: Any

    def canonical(self) -> bytes:
        """The document as canonical JSON (sorted keys, no spaces, UTF-8) plus a newline."""
        return (
            json.dumps(self.document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
            + b"\n"
        )

    def file_name(self) -> str:
        parts = [self.kind, self.namespace or "_cluster", self.name]
        safe = ["".join(c if c.isalnum() or c in "-_." else "_" for c in part) for part in parts]
        return f"{POLICIES_DIR}/{'__'.join(safe)}.json"


@dataclass
class Facts:
    """Everything about the export that does not come from the flow lines."""

    query: dict[str, Any]
    completeness: dict[str, Any]
    policies_source: dict[str, Any]
    policies: list[PolicyDocument] = field(default_factory=list)
    fqdn_cache: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    tool: dict[str, str] = field(default_factory=dict)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_json(value: Any) -> bytes:
    """The manifest's bytes: indented, sorted keys, UTF-8, final newline (stable across machines)."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False).encode() + b"\n"


def finish_bundle(folder: Path, facts: Facts, sign_key: Any = None) -> dict[str, Any]:
    """Write chain, policies, report, manifest (and signature); returns the manifest."""
    from hubblepy.evidence.report import render_report

    data = (folder / FLOWS_FILE).read_bytes()
    lines = split_flow_lines(data)
    rows = list(chain_rows(lines))
    summary = summarize(lines)
    files: dict[str, str] = {}
    chain_bytes = format_chain_file(rows)
    (folder / CHAIN_FILE).write_bytes(chain_bytes)
    files[CHAIN_FILE] = sha256_hex(chain_bytes)
    policy_rows = []
    if facts.policies:
        (folder / POLICIES_DIR).mkdir(exist_ok=True)
    for policy in sorted(facts.policies, key=lambda p: (p.kind, p.namespace, p.name)):
        body = policy.canonical()
        name = policy.file_name()
        (folder / name).write_bytes(body)
        policy_rows.append(
            {
                "kind": policy.kind,
                "namespace": policy.namespace,
                "name": policy.name,
                "sha256": sha256_hex(body),
                "file": name,
            }
        )
    manifest: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "created": facts.created,
        "tool": facts.tool,
        "query": facts.query,
        "completeness": facts.completeness,
        "counts": summary.counts_json(),
        "time_range": summary.time_range_json(),
        "policies": {**facts.policies_source, "items": policy_rows},
        "fqdn_cache": facts.fqdn_cache,
        "integrity": {
            "algorithm": "sha256-chain/1 (see docs/evidence.md)",
            "lines": len(rows),
            "chain_head": chain_head(rows),
            "flows_sha256": sha256_hex(data),
            "files": files,
        },
    }
    if sign_key is not None:
        from hubblepy.evidence.signing import fingerprint

        manifest["signature"] = {"algorithm": "Ed25519", "public_key": fingerprint(sign_key.public_key())}
    report = render_report(manifest, summary)
    (folder / REPORT_FILE).write_bytes(report)
    files[REPORT_FILE] = sha256_hex(report)
    body = canonical_json(manifest)
    (folder / MANIFEST_FILE).write_bytes(body)
    if sign_key is not None:
        from hubblepy.evidence.signing import sign

        (folder / SIGNATURE_FILE).write_bytes(sign(sign_key, body))
    return manifest


def summary_of(folder: Path) -> FlowSummary:
    return summarize(split_flow_lines((folder / FLOWS_FILE).read_bytes()))
