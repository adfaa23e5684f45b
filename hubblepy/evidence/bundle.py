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
from hubblepy.evidence.chain import Chain, iter_file_lines
from hubblepy.evidence.summary import FlowSummary


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


@dataclass
class Scan:
    """One pass over ``flows.jsonl``: its summary, chain head, digest, and the digest of ``chain.txt``."""

    summary: FlowSummary
    lines: int
    chain_head: str
    flows_sha256: str
    chain_sha256: str


def scan_flows(folder: Path) -> Scan:
    """Read ``flows.jsonl`` in chunks (memory does not grow with it): write ``chain.txt``, count what
    the lines say, and digest both files."""
    flows_digest = hashlib.sha256()
    with open(folder / FLOWS_FILE, "rb") as raw:
        for block in iter(lambda: raw.read(1 << 20), b""):
            flows_digest.update(block)
    summary = FlowSummary()
    chain_digest = hashlib.sha256()
    chain = Chain()
    with open(folder / CHAIN_FILE, "wb") as out:
        pending: list[bytes] = []
        for line in iter_file_lines(folder / FLOWS_FILE):
            summary.add(line)
            row = chain.add(line)
            pending.append(f"{row.line_sha256} {row.chain}\n".encode())
            if len(pending) >= 4096:
                block = b"".join(pending)
                chain_digest.update(block)
                out.write(block)
                pending.clear()
        block = b"".join(pending)
        chain_digest.update(block)
        out.write(block)
    return Scan(summary, summary.lines, chain.head, flows_digest.hexdigest(), chain_digest.hexdigest())


def finish_bundle(folder: Path, facts: Facts, scan: Scan, sign_key: Any = None) -> dict[str, Any]:
    """Write policies, report, manifest (and signature) around a scanned ``flows.jsonl``."""
    from hubblepy.evidence.report import render_report

    summary = scan.summary
    files: dict[str, str] = {CHAIN_FILE: scan.chain_sha256}
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
            "lines": scan.lines,
            "chain_head": scan.chain_head,
            "flows_sha256": scan.flows_sha256,
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
