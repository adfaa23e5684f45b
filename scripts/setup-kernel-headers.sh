#!/usr/bin/env bash
# Make kernel headers visible to bcc for the running kernel (Debian 12).
#
# bcc compiles BPF C at run time and looks for headers under
# /lib/modules/$(uname -r)/build and .../source. When the running kernel has no
# headers package (custom or cloud kernels), the generic Debian headers are good
# enough for tc programs: they only need uapi definitions and bcc's helpers.
# This script is idempotent: it installs linux-headers-amd64 if no headers are
# installed, picks the newest installed /usr/src/linux-headers-<ver>-<arch>
# tree and links it into the running kernel's module directory only when that
# directory has no build/source entry yet. It prints what it did.
set -euo pipefail

release="$(uname -r)"
moddir="/lib/modules/${release}"

say() { echo "setup-kernel-headers: $*"; }

if [[ -e "${moddir}/build/include" && -e "${moddir}/source/include" ]]; then
    say "headers already present for ${release} (${moddir}/build -> $(readlink -f "${moddir}/build")); nothing to do"
    exit 0
fi

if [[ "$(id -u)" != "0" ]]; then
    say "must run as root (it installs packages and writes ${moddir})" >&2
    exit 1
fi

arch_pkg="linux-headers-amd64"
case "$(dpkg --print-architecture 2>/dev/null || echo amd64)" in
    arm64) arch_pkg="linux-headers-arm64" ;;
esac

# Exact headers for this kernel first, then the generic metapackage.
if [[ ! -e "/usr/src/linux-headers-${release}" ]]; then
    if compgen -G "/usr/src/linux-headers-*-common" >/dev/null; then
        say "using already installed generic headers"
    else
        say "installing ${arch_pkg}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        if ! apt-get install -y -qq "linux-headers-${release}" >/dev/null 2>&1; then
            apt-get install -y -qq "${arch_pkg}"
        fi
    fi
fi

if [[ -e "/usr/src/linux-headers-${release}" ]]; then
    build="/usr/src/linux-headers-${release}"
    common="$(readlink -f "${build}/source" 2>/dev/null || echo "${build}")"
else
    # Newest arch-specific tree, e.g. /usr/src/linux-headers-6.1.0-56-amd64.
    build="$(ls -d /usr/src/linux-headers-*-* 2>/dev/null | grep -v -- '-common$' | sort -V | tail -n 1 || true)"
    if [[ -z "${build}" ]]; then
        say "no kernel headers found under /usr/src after installing ${arch_pkg}" >&2
        exit 1
    fi
    common="${build%-*}-common"
    [[ -d "${common}" ]] || common="${build}"
fi

mkdir -p "${moddir}"
for pair in "build:${build}" "source:${common}"; do
    name="${pair%%:*}"
    target="${pair#*:}"
    link="${moddir}/${name}"
    if [[ -e "${link}" ]]; then
        say "${link} exists -> $(readlink -f "${link}"); left unchanged"
    else
        ln -sfn "${target}" "${link}"
        say "linked ${link} -> ${target}"
    fi
done
say "done; bcc can now compile for ${release}"
