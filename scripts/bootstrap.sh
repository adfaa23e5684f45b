#!/usr/bin/env bash
# Install everything hubblepy needs on a fresh Debian 12 machine (as root) and make .venv.
# Safe to run again: it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(python3 python3-venv python3-pip python3-bpfcc bpfcc-tools libbpfcc iproute2 jq
              linux-headers-amd64 curl procps util-linux gcc
              python3-dev  # Python.h: the mypyc build of the HTTP proxy (below)
              golang-google-grpc-dev)  # grpc-go sources for the relay benchmark's upstream client
# Plus the package of every program the tests, lab, demo and benchmarks call (one table, also
# checked by tests/test_00_environment.py).
while read -r _program package _; do
    APT_PACKAGES+=("$package")
done < <(grep -v '^[[:space:]]*\(#\|$\)' scripts/external-programs.txt)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "bootstrap: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q "${missing[@]}" >/dev/null
    # `hubble lab up --prometheus` runs its own Prometheus on loopback with its own data directory;
    # the system service the package just enabled would hold :9090, so stop the one we installed.
    if [[ " ${missing[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null \
        && [ -d /run/systemd/system ]; then
        systemctl disable --now prometheus >/dev/null 2>&1 || true
    fi
fi

if [ -x scripts/setup-kernel-headers.sh ] || [ -f scripts/setup-kernel-headers.sh ]; then
    bash scripts/setup-kernel-headers.sh
fi

# Debian's Python with system site packages: bcc is only packaged for it.
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import bcc' >/dev/null 2>&1; then
    rm -rf .venv
    /usr/bin/python3 -m venv --system-site-packages .venv
fi
stamp=.venv/.hubblepy-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "bootstrap: installing Python packages into .venv"
    .venv/bin/pip install -q --upgrade pip >/dev/null
    .venv/bin/pip install -q -e '.[dev]'
    touch "$stamp"
fi

# The HTTP proxy's hot modules compiled by mypyc into build/native (hubblepy/native.py); a process
# loads them only while their sources are unchanged, so this rebuilds whenever they change.
if ! .venv/bin/python -m hubblepy.native build --if-stale; then
    echo "bootstrap: the mypyc build of the HTTP proxy failed (see above)" >&2
    exit 1
fi
