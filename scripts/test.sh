#!/usr/bin/env bash
# The README's test command: install what is missing, then lint, typecheck and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
exec nox -s lint typecheck tests -- "$@"
