#!/usr/bin/env bash
# The README's main job: show the payments story (default deny, api-allow, L7, audit mode) in flows.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
exec python scripts/demo.py "$@"
