#!/usr/bin/env bash
# Build the tiny Nimbus test guest from Debian packages only (no internet beyond the Debian
# mirror, no root needed once the tools are installed by scripts/install-qemu.sh).
#
#   scripts/build-test-image.sh OUTDIR
#
# Output (OUTDIR):
#   nimbus-test.qcow2    bootable "Glance-style" disk: FAT + syslinux + kernel + initramfs.
#                        SeaBIOS boots it like any cloud image; no -kernel flag needed.
#   vmlinuz, initramfs.cpio.gz   the same kernel and initramfs, for hand experiments.
#   BUILD-INFO           kernel package and recipe hash; its presence marks a complete build.
#
# Cached: if OUTDIR/BUILD-INFO names the same kernel package and the same recipe (this
# script's hash), nothing is rebuilt. The kernel package version changes with Debian point
# releases, so the cache key includes it.
#
# The guest's /init: mounts proc/sys/dev, loads the virtio modules in dependency order (the
# .deb has no modules.dep), brings up eth0 (static from the kernel word gip=ADDR/PREFIX, else
# DHCP), starts busybox acpid so the ACPI power button runs `poweroff -f`, prints
#   GUEST-READY ip=<a.b.c.d/n> uptime=<s> boot=<boot-id> cpus=<n> mem_kb=<n> disks=<vda,...>
# on the serial console, then runs a root shell there forever.
set -euo pipefail

OUT=${1:?usage: build-test-image.sh OUTDIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
SELF="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
RECIPE=$(sha256sum "$SELF" | cut -c1-16)

for tool in mkfs.fat mcopy syslinux qemu-img apt-get dpkg; do
    command -v "$tool" >/dev/null || {
        echo "build-test-image.sh: '$tool' is missing; run scripts/install-qemu.sh (as root)" >&2
        exit 1
    }
done

kernel_pkg() {
    apt-cache depends linux-image-cloud-amd64 2>/dev/null |
        awk '/Depends: linux-image-/{print $2; exit}'
}
KPKG=$(kernel_pkg || true)
if [ -z "$KPKG" ] && [ "$(id -u)" -eq 0 ]; then
    apt-get update -q >/dev/null
    KPKG=$(kernel_pkg || true)
fi
if [ -z "$KPKG" ]; then
    if [ -f "$OUT/BUILD-INFO" ] && grep -q "^recipe=$RECIPE$" "$OUT/BUILD-INFO"; then
        echo "build-test-image.sh: apt has no package lists; keeping the existing build in $OUT" >&2
        exit 0
    fi
    echo "build-test-image.sh: cannot resolve linux-image-cloud-amd64 (run apt-get update)" >&2
    exit 1
fi

INFO="kernel=$KPKG
recipe=$RECIPE"
if [ -f "$OUT/BUILD-INFO" ] && [ "$(cat "$OUT/BUILD-INFO")" = "$INFO" ] && [ -f "$OUT/nimbus-test.qcow2" ]; then
    echo "test image up to date: $OUT/nimbus-test.qcow2 ($KPKG)"
    exit 0
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/nimbus-image.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
rm -f "$OUT/BUILD-INFO"

# apt-get download as root warns that _apt cannot write here; harmless.
apt-get download -q "$KPKG" busybox-static >/dev/null 2>&1 || apt-get download "$KPKG" busybox-static
dpkg -x "$KPKG"_*.deb k
dpkg -x busybox-static_*.deb bb

MODULES="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_mmio
failover net_failover virtio_net virtio_blk virtio_balloon button evdev"
mkdir -p root/bin root/lib/modules root/etc/acpi/PWRF
cp bb/bin/busybox root/bin/
for m in $MODULES; do
    f=$(find k/lib/modules -name "$m.ko" | head -1)
    [ -n "$f" ] || { echo "module $m.ko not found in $KPKG" >&2; exit 1; }
    cp "$f" root/lib/modules/
done

cat >root/init <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
# /var/run and /var/log must exist or busybox acpid exits silently.
mkdir -p /proc /sys /dev /tmp /mnt /root /var/run /var/log
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
# Dependency order; the .deb ships no modules.dep. busybox insmod ignores kernel-cmdline
# module parameters, so pass virtio_mmio.device= by hand.
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci \
         virtio_mmio failover net_failover virtio_net virtio_blk virtio_balloon button evdev; do
    args=""
    if [ $m = virtio_mmio ]; then
        for w in $(cat /proc/cmdline); do
            case $w in virtio_mmio.device=*) args="$args device=${w#virtio_mmio.device=}";; esac
        done
    fi
    insmod /lib/modules/$m.ko $args 2>/dev/null
done
ip link set lo up
if [ -e /sys/class/net/eth0 ]; then
    ip link set eth0 up
    # Kernel-cmdline words k=v reach /init as environment variables.
    if [ -n "$gip" ]; then
        ip addr add "$gip" dev eth0
    else
        udhcpc -i eth0 -q -n -t 5 -T 1 -s /etc/udhcpc.script >/dev/null 2>&1
    fi
fi
acpid -c /etc/acpi -l /dev/null
ip4=$(ip -4 -o addr show dev eth0 2>/dev/null | awk '{print $4}')
read up _ </proc/uptime
echo "GUEST-READY ip=${ip4:-none} uptime=$up boot=$(cut -c1-8 /proc/sys/kernel/random/boot_id) cpus=$(grep -c ^processor /proc/cpuinfo) mem_kb=$(awk '/MemTotal/{print $2}' /proc/meminfo) disks=$(ls /sys/block | tr '\n' , | sed 's/,$//')"
while :; do setsid cttyhack sh -l; done
INIT
chmod 755 root/init

cat >root/etc/acpi/PWRF/00000080 <<'X'
#!/bin/sh
# acpid runs this with stdout on /dev/null: write to the console directly.
echo GUEST-POWERDOWN >/dev/console
sync
poweroff -f
X
chmod 755 root/etc/acpi/PWRF/00000080

cat >root/etc/udhcpc.script <<'X'
#!/bin/sh
case "$1" in
bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    [ -n "$router" ] && ip route add default via "${router%% *}" dev "$interface"
    ;;
esac
exit 0
X
chmod 755 root/etc/udhcpc.script
echo 'root:x:0:0:root:/root:/bin/sh' >root/etc/passwd
echo 'nimbus-test' >root/etc/hostname

(cd root && find . | ../bb/bin/busybox cpio -o -H newc 2>/dev/null) | gzip -9 >initramfs.cpio.gz
cp k/boot/vmlinuz-* vmlinuz

# A bootable FAT "superfloppy": SeaBIOS loads syslinux's boot sector, syslinux loads the
# kernel and initramfs. The serial console carries the log and the shell. (console=tty0 as well
# would show the boot on the VNC screen but costs ~0.6 s of TCG boot time.)
cat >syslinux.cfg <<'X'
DEFAULT linux
PROMPT 0
TIMEOUT 0
LABEL linux
  KERNEL vmlinuz
  INITRD initrd.gz
  APPEND console=ttyS0 quiet panic=-1
X
kib=$(( ( $(stat -c %s vmlinuz) + $(stat -c %s initramfs.cpio.gz) ) / 1024 + 4096 ))
mkfs.fat -C -n NIMBUS boot.img "$kib" >/dev/null
mcopy -i boot.img vmlinuz ::vmlinuz
mcopy -i boot.img initramfs.cpio.gz ::initrd.gz
mcopy -i boot.img syslinux.cfg ::syslinux.cfg
syslinux --install boot.img
qemu-img convert -c -f raw -O qcow2 boot.img nimbus-test.qcow2

mv -f vmlinuz initramfs.cpio.gz nimbus-test.qcow2 "$OUT/"
printf '%s\n' "$INFO" >"$OUT/BUILD-INFO"
echo "built $OUT/nimbus-test.qcow2 ($KPKG, $(stat -c %s "$OUT/nimbus-test.qcow2") bytes)"
