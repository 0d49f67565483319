#!/usr/bin/env bash
# Runs inside userns.sh: builds and configures the arm64 root file system.
# Usage: rootfs.sh QEMU_AARCH64_STATIC ROOTFS MIRROR
set -euo pipefail
qemu=$1 rootfs=$2 mirror=$3

# This user namespace's own binfmt_misc; the "F" flag opens the emulator now, so it also runs
# inside the chroot.
mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
magic='\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00'
mask='\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff'
printf '%s' ":qemu-aarch64:M::$magic:$mask:$qemu:F" > /proc/sys/fs/binfmt_misc/register

# mmdebstrap cannot mount /proc and /sys in this namespace; it says so and bind-mounts them.
mmdebstrap --quiet --mode=root --arch=arm64 --variant=minbase \
    --include=systemd-sysv,udev,kmod,iproute2 bookworm "$rootfs" "$mirror"

echo iop-vm > "$rootfs/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 iop-vm\n' > "$rootfs/etc/hosts"
echo '/dev/vda / ext4 rw,errors=remount-ro 0 0' > "$rootfs/etc/fstab"

# The user-mode network's DHCP gives the address the host's port forwards reach.
mkdir -p "$rootfs/etc/systemd/network" "$rootfs/etc/systemd/system/multi-user.target.wants" \
    "$rootfs/etc/systemd/system/sockets.target.wants"
printf '[Match]\nName=en* eth*\n\n[Network]\nDHCP=ipv4\n' > "$rootfs/etc/systemd/network/10-dhcp.network"
ln -sf /lib/systemd/system/systemd-networkd.service \
    "$rootfs/etc/systemd/system/multi-user.target.wants/systemd-networkd.service"
ln -sf /lib/systemd/system/systemd-networkd.socket \
    "$rootfs/etc/systemd/system/sockets.target.wants/systemd-networkd.socket"

# A root shell on the serial console, which the host's driver (run.py) types into.
getty="$rootfs/etc/systemd/system/serial-getty@ttyAMA0.service.d"
mkdir -p "$getty"
printf '[Service]\nExecStart=\nExecStart=-/sbin/agetty --autologin root --noclear --keep-baud 115200,57600,38400,9600 %%I $TERM\n' \
    > "$getty/autologin.conf"

# Nothing periodic that could compete with the test for the emulated CPU.
for unit in apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer \
    fstrim.timer systemd-tmpfiles-clean.timer; do
    ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
done
