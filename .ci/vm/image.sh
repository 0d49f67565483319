#!/usr/bin/env bash
# Builds the arm64 Debian 12 system that .ci/vm-test boots: a kernel, a tiny initramfs and an
# ext4 root image with systemd as PID 1. Usage: image.sh DIR (DIR/vmlinuz, initrd.img, root.img).
#
# Everything happens on the host, as root, without touching the host's binfmt_misc or apt state:
# apt runs on a private state directory that believes it is arm64, and mmdebstrap runs inside a
# user namespace that mounts its own binfmt_misc with qemu-aarch64-static registered (the kernel
# keeps one binfmt_misc per user namespace since Linux 6.7). Building the distribution's own
# initrd, or a debootstrap second stage, inside the emulated guest takes many minutes instead.
set -euo pipefail

out=$1
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d "${TMPDIR:-/var/tmp}/iop-vm-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
mirror=http://deb.debian.org/debian

# Apt for arm64 on a private state: only for downloading the kernel and busybox.
mkdir -p "$work/apt/state/lists/partial" "$work/apt/cache/archives/partial" \
    "$work/apt/etc/sources.list.d" "$work/apt/etc/preferences.d" "$work/debs"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
for suite in "$mirror bookworm" "$mirror bookworm-updates" \
    "http://deb.debian.org/debian-security bookworm-security"; do
    echo "deb [signed-by=$keyring] $suite main"
done > "$work/apt/etc/sources.list"
apt_arm64=(-o "Dir::State=$work/apt/state" -o "Dir::Cache=$work/apt/cache"
    -o "Dir::Etc=$work/apt/etc" -o "APT::Architecture=arm64" -o "APT::Architectures::=arm64"
    -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
apt-get "${apt_arm64[@]}" -qq update
kernel_package=$(apt-cache "${apt_arm64[@]}" depends linux-image-arm64 \
    | sed -n 's/^ *Depends: \(linux-image-[0-9].*-arm64\)$/\1/p' | head -n 1)
(cd "$work/debs" && apt-get "${apt_arm64[@]}" -qq download "$kernel_package" busybox-static \
    && apt-get -o "APT::Sandbox::User=root" -qq download qemu-user-static)
for deb in "$work"/debs/*.deb; do
    dpkg-deb -x "$deb" "$work/unpacked"
done
kernel_version=${kernel_package#linux-image-}
echo "kernel $kernel_version"

# The root file system, configured from inside the user namespace (see rootfs.sh).
rootfs="$work/rootfs"
qemu_static="$work/unpacked/usr/bin/qemu-aarch64-static"
"$here/userns.sh" bash "$here/rootfs.sh" "$qemu_static" "$rootfs" "$mirror"
mkdir -p "$rootfs/lib/modules"
cp -a "$work/unpacked/lib/modules/$kernel_version" "$rootfs/lib/modules/"
depmod -b "$rootfs" "$kernel_version"

# The initramfs: busybox, the modules that reach an ext4 root on virtio-mmio, and an init that
# mounts it and hands over to systemd.
initramfs="$work/initramfs"
mkdir -p "$initramfs"/{bin,dev,proc,sys,newroot,modules}
cp "$work/unpacked/bin/busybox" "$initramfs/bin/busybox"
# Order matters: each module after the ones it needs.
for module in virtio_mmio virtio_blk crc16 mbcache jbd2 crc32c_generic ext4; do
    path=$(find "$work/unpacked/lib/modules/$kernel_version" -name "$module.ko*" | head -n 1)
    [ -n "$path" ] || { echo "error: module $module not in $kernel_package"; exit 1; }
    cp "$path" "$initramfs/modules/$(printf '%02d' "$(ls "$initramfs/modules" | wc -l)")-$module.ko"
done
cp "$here/initramfs-init" "$initramfs/init"
chmod 755 "$initramfs/init"
(cd "$initramfs" && find . | cpio -o -H newc --quiet | gzip -1) > "$work/initrd.img"

# A 2 GB ext4 image (about 600 MB used); the guest boots it with snapshot=on.
mke2fs -q -t ext4 -L root -d "$rootfs" "$work/root.img" 2G

mkdir -p "$out"
cp "$work/unpacked/boot/vmlinuz-$kernel_version" "$out/vmlinuz.new"
mv "$work/initrd.img" "$out/initrd.img.new"
mv "$work/root.img" "$out/root.img.new"
for file in vmlinuz initrd.img root.img; do mv "$out/$file.new" "$out/$file"; done
echo "image ready in $out"
