"""Checking a bundle offline: signature, hash chain, file digests and the manifest's derived fields.

:func:`verify_bundle` returns ``(True, summary)`` or ``(False, reason)``; the reason names the first
flows.jsonl line that was altered, removed, moved or added, or the file / manifest field that no
longer matches. Checks run from the outside in: manifest readable, signature (when a public key is
given), flows against chain.txt line by line, chain.txt against the manifest, other files against
their digests, then the counts the manifest states against what the flow lines say.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hubblepy.evidence import BUNDLE_FORMAT, CHAIN_FILE, FLOWS_FILE, MANIFEST_FILE, SIGNATURE_FILE
from hubblepy.evidence.chain import (
    Chain,
    ChainFileError,
    ChainRow,
    chain_rows,
    first_difference,
    iter_file_lines,
    parse_chain_file,
    parse_chain_row,
)
from hubblepy.evidence.summary import FlowSummary


def _read(folder: Path, name: str) -> bytes | None:
    try:
        return (folder / name).read_bytes()
    except FileNotFoundError:
        return None


def _field(manifest: dict[str, Any], dotted: str) -> Any:
    value: Any = manifest
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def verify_bundle(folder: Path, public_key_path: Path | None = None) -> tuple[bool, str]:
    """``(True, summary line)`` for an intact bundle, else ``(False, the first problem)``."""
    try:
        return _verify(folder, public_key_path)
    except (AttributeError, TypeError, KeyError, ValueError) as exc:
        return (
            False,
            f"{MANIFEST_FILE} does not have the structure of a bundle manifest ({type(exc).__name__}: {exc})",
        )
    except OSError as exc:
        return False, f"cannot read the bundle: {exc.filename or folder}: {(exc.strerror or 'error').lower()}"


def _verify(folder: Path, public_key_path: Path | None) -> tuple[bool, str]:
    if not folder.is_dir():
        return False, f"{folder}: not a directory"
    body = _read(folder, MANIFEST_FILE)
    if body is None:
        return False, f"{MANIFEST_FILE} is missing"
    try:
        manifest = json.loads(body)
    except ValueError as exc:
        return False, f"{MANIFEST_FILE} is not valid JSON: {exc}"
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        return False, f"manifest field format is not {BUNDLE_FORMAT!r}"

    signature_note = _check_signature(folder, body, manifest, public_key_path)
    if signature_note.startswith("FAIL "):
        return False, signature_note[5:]

    flows_path, chain_path = folder / FLOWS_FILE, folder / CHAIN_FILE
    if not flows_path.is_file():
        return False, f"{FLOWS_FILE} is missing"
    if not chain_path.is_file():
        return False, f"{CHAIN_FILE} is missing"
    try:
        summary, head, difference = _walk_chain(flows_path, chain_path)
    except ChainFileError as exc:
        return False, str(exc)
    if difference is not None:
        return False, difference
    integrity = manifest.get("integrity") or {}
    if integrity.get("chain_head") != head:
        return False, "manifest field integrity.chain_head no longer matches chain.txt"
    if integrity.get("lines") != summary.lines:
        return False, "manifest field integrity.lines no longer matches chain.txt"
    if integrity.get("flows_sha256") != _file_digest(flows_path):
        return False, "manifest field integrity.flows_sha256 no longer matches flows.jsonl"
    for name, digest in sorted((integrity.get("files") or {}).items()):
        problem = _check_file(folder, name, digest, f"integrity.files.{name}")
        if problem:
            return False, problem
    for index, policy in enumerate(_field(manifest, "policies.items") or []):
        problem = _check_file(
            folder, policy.get("file", ""), policy.get("sha256"), f"policies.items[{index}].sha256"
        )
        if problem:
            return False, problem

    derived = {
        "counts.lines": summary.lines,
        "counts.flows": summary.flows,
        "counts.lost_event_records": len(summary.lost_events),
        "counts.by_verdict": dict(sorted(summary.by_verdict.items())),
        "time_range.first_flow": summary.first_time,
        "time_range.last_flow": summary.last_time,
    }
    for dotted, value in derived.items():
        stated = _field(manifest, dotted)
        if stated != value:
            return False, (
                f"manifest field {dotted} no longer matches flows.jsonl (manifest says {json.dumps(stated)}, "
                f"the lines say {json.dumps(value)})"
            )
    complete = "complete" if _field(manifest, "completeness.complete") else "NOT complete (see report.html)"
    return True, (
        f"{folder}: intact: {summary.lines} lines ({summary.flows} flows), chain head "
        f"{integrity['chain_head'][:16]}..., {signature_note}; export was {complete}"
    )


def _walk_chain(flows_path: Path, chain_path: Path) -> tuple[FlowSummary, str, str | None]:
    """Stream flows.jsonl against chain.txt: the lines' summary, the chain head, and the first
    disagreement named (both files are then read whole to name it), or None."""
    summary = FlowSummary()
    chain = Chain()
    recorded = _iter_chain_file(chain_path)
    agree = True
    for line in iter_file_lines(flows_path):
        summary.add(line)
        if next(recorded, None) != chain.add(line):
            agree = False
            break
    else:
        agree = next(recorded, None) is None
    if agree:
        return summary, chain.head, None
    want = parse_chain_file(chain_path.read_bytes())
    got = list(chain_rows(iter_file_lines(flows_path)))
    return summary, chain.head, first_difference(want, got) or "chain.txt does not match flows.jsonl"


def _iter_chain_file(path: Path) -> Iterator[ChainRow]:
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, 1):
            yield parse_chain_row(line, number)


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_file(folder: Path, name: str, digest: Any, field_name: str) -> str:
    if not name or "/" in name.replace("policies/", "", 1) or name.startswith(("/", "..")):
        return f"manifest field {field_name} names an unsafe path {name!r}"
    if not (folder / name).is_file():
        return f"{name} is missing"
    if _file_digest(folder / name) != digest:
        return f"{name} was altered (manifest field {field_name} no longer matches)"
    return ""


def _check_signature(
    folder: Path, body: bytes, manifest: dict[str, Any], public_key_path: Path | None
) -> str:
    """A note for the summary line, or ``FAIL <reason>``."""
    signature = _read(folder, SIGNATURE_FILE)
    signed = manifest.get("signature")
    if public_key_path is None:
        if signature is None:
            return "not signed"
        return "signature present but not checked (pass --pub-key)"
    from hubblepy.evidence.signing import KeyError_, check, fingerprint, load_public

    try:
        key = load_public(public_key_path)
    except KeyError_ as exc:
        return f"FAIL {exc}"
    if signature is None:
        return f"FAIL {SIGNATURE_FILE} is missing (the bundle is not signed)"
    if not check(key, body, signature):
        if isinstance(signed, dict) and signed.get("public_key") != fingerprint(key):
            return (
                f"FAIL {MANIFEST_FILE} was not signed by this key (manifest field signature.public_key "
                f"is {signed.get('public_key')}, the key is {fingerprint(key)})"
            )
        return f"FAIL {MANIFEST_FILE} was altered after signing (the Ed25519 signature does not match)"
    return f"Ed25519 signature good ({fingerprint(key)[:23]}...)"
