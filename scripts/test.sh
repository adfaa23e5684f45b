#!/usr/bin/env bash
# The README's test command: install what is missing, then lint, typecheck, a 30 s fuzz smoke run per
# target (atheris) and the whole test suite. HUBBLEPY_FUZZ_SMOKE=0 skips the fuzz run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
nox -s lint typecheck
if [ "${HUBBLEPY_FUZZ_SMOKE:-1}" != 0 ]; then
    nox -s fuzz -- --smoke
fi
exec nox -s tests -- "$@"
