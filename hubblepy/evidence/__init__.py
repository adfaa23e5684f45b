"""Audit evidence bundles: flows, a manifest of what was asked and how complete the answer is, a hash
chain over the flow lines, an optional Ed25519 signature and a self-contained HTML report.

A bundle is a directory: ``flows.jsonl`` (exactly what ``hubble observe -o json`` printed),
``chain.txt`` (per line: the line's SHA-256 and the running chain value), ``policies/`` (the policy
documents in force, canonical JSON), ``report.html``, ``manifest.json`` and, when signed,
``manifest.sig``. See docs/evidence.md.
"""

BUNDLE_FORMAT = "hubblepy-evidence/1"
FLOWS_FILE = "flows.jsonl"
CHAIN_FILE = "chain.txt"
MANIFEST_FILE = "manifest.json"
SIGNATURE_FILE = "manifest.sig"
REPORT_FILE = "report.html"
POLICIES_DIR = "policies"
