#!/usr/bin/env bash
# The README's main job: show the payments story (default deny, api-allow, L7, audit mode) in flows.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
python scripts/demo.py "$@"
echo "Service map: run '.venv/bin/hubble ui' and open http://127.0.0.1:12000 (docs/ui.md)."
