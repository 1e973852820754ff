#!/usr/bin/env bash
# Install what the qemu driver and the test image build need, on Debian 12 (bookworm), as root.
#
# Idempotent: re-running changes nothing once everything is there.
#
# Why bookworm-backports: plain bookworm's qemu-system-x86 is QEMU 7.2 and its dependencies
# REMOVE the qemu-utils 10.x that Debian 12 machines here carry from backports (see
# shared/research/qemu-on-this-machine.md). Backports gives QEMU 10, matching qemu-img.
# Why --no-install-recommends: with recommends it is ~190 packages / 535 MB (GTK, mesa);
# without it ~21 packages / 16 MB.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "install-qemu.sh: must run as root" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive

need_pkgs() {
    # Prints the packages of "$@" that are not installed.
    for p in "$@"; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
    done
}

src=/etc/apt/sources.list.d/bookworm-backports.sources
updated=0
if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    cat >"$src" <<'X'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
X
    apt-get update -q
    updated=1
fi

# qemu-system-x86 (and qemu-utils for qemu-img) from backports.
missing_bpo=$(need_pkgs qemu-system-x86 qemu-utils)
# The test image build: FAT + syslinux bootable disk; busybox-static and the kernel are
# fetched with `apt-get download` by build-test-image.sh, not installed.
missing_main=$(need_pkgs dosfstools mtools syslinux syslinux-common)

if [ -n "$missing_bpo$missing_main" ] && [ "$updated" = 0 ]; then
    apt-get update -q
fi
if [ -n "$missing_bpo" ]; then
    # shellcheck disable=SC2086
    apt-get install -y -q -t bookworm-backports --no-install-recommends $missing_bpo
fi
if [ -n "$missing_main" ]; then
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $missing_main
fi

qemu-system-x86_64 --version | head -1
qemu-img --version | head -1
