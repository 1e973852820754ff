#!/usr/bin/env bash
# The whole test suite: `bash scripts/test.sh` (the README's second command).
#
# Works on a fresh Debian 12 machine as root with the Rust toolchain, cargo-nextest and
# Python 3.11: it installs what else it needs (a C toolchain, python3-venv and chromium if
# missing; QEMU and the guest image tools through scripts/install-qemu.sh), then runs
#   1. cargo nextest run --workspace   unit tests, store conformance, integration tests,
#                                      the qemu driver booting real guests (TCG)
#   2. tests/clients/run.sh            the real OpenStack clients against `nimbus serve`
# and stops at the first failing phase. Arguments are passed to the client tests (pytest).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

die() {
    echo "scripts/test.sh: $*" >&2
    exit 1
}

phase() {
    local name=$1 t0=$SECONDS
    shift
    echo "==> $name" >&2
    "$@" || die "FAILED: $name (exit $?)"
    echo "==> $name: ok in $((SECONDS - t0))s" >&2
}

is_root() { [[ $(id -u) -eq 0 ]]; }

apt_install() {
    is_root && command -v apt-get >/dev/null || die "missing $*: install it (Debian: apt-get install $*)"
    echo "scripts/test.sh: installing $* (apt)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null || die "apt-get install $* failed"
}

# ---- prerequisites ----
command -v cargo >/dev/null || die "cargo not found: install the Rust toolchain (https://rustup.rs)"
cargo nextest --version >/dev/null 2>&1 || die "cargo-nextest not found: cargo install cargo-nextest --locked"
export PYTHON=${PYTHON:-python3}
command -v "$PYTHON" >/dev/null || die "$PYTHON not found: install Python 3.11"
# A C toolchain and make: bundled SQLite and jemalloc (the service's allocator) are built from
# C sources, jemalloc with its configure script and make.
command -v cc >/dev/null && command -v make >/dev/null || apt_install build-essential
# Debian's python3 needs python3-venv for `python3 -m venv` (ensurepip).
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv

# ---- Chromium for the VPE browser-console test (integration vpe::console_page_connects_in_a_browser) ----
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
    apt_install chromium
fi

# ---- QEMU for the qemu driver's real-guest tests (crates/agent/tests/qemu.rs) ----
# scripts/install-qemu.sh is idempotent and needs root; its output is shown only on failure.
install_qemu() {
    local log
    log=$(mktemp)
    if ! bash scripts/install-qemu.sh >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        return 1
    fi
    rm -f "$log"
}
if is_root; then
    phase "install QEMU (scripts/install-qemu.sh)" install_qemu
elif ! command -v qemu-system-x86_64 >/dev/null; then
    die "QEMU is missing and this is not root: run 'sudo bash scripts/install-qemu.sh' first"
fi

# ---- build once: every test target, and target/debug/nimbus for the client tests ----
# (The same build nextest does. A separate `cargo build -p nimbus` would compile the
# binary a second time with other dependency features, for nothing.)
phase "cargo build --workspace --tests" cargo build --quiet --workspace --tests

# ---- 1. Rust: unit, store conformance and integration tests ----
phase "cargo nextest run --workspace" cargo nextest run --workspace

# ---- 2. real OpenStack clients against a real `nimbus serve` ----
phase "client tests (tests/clients/run.sh)" bash tests/clients/run.sh "$@"
