#!/usr/bin/env bash
# Builds the kernel + initramfs of the NVMe/TCP test VM, idempotently, into
#   ${CSI_HUB_CACHE:-$HOME/.cache/csi-hub}/vm-<kernel version>/{vmlinuz,initrd.gz}
# and prints that directory as the last line of stdout. Exit status 3 means this
# machine cannot provide the VM (not root, no apt, no network): test/vm skips
# then, except under CI=true.
#
# Image version 2: virtio-net and virtio-blk for the multi-host test
# (test/vm TestHosts*: a storage host and nodes on private qemu links).
#
# Why a VM: the host kernel has no nvmet, nvme-tcp or configfs; the Debian cloud
# kernel has them as modules and boots in a few seconds under qemu TCG.
# The initramfs holds busybox, nvme-cli, the mkfs/resize tools the plugin runs,
# the kernel modules and an /init that runs /test (a static Go test binary that
# the caller appends as a second cpio archive) and prints
#   CSI-HUB-VM-RESULT: PASS rc=0   (or FAIL rc=<n>)
# before powering off.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${CSI_HUB_CACHE:-${HOME:-/root}/.cache/csi-hub}

log() { echo "build.sh: $*" >&2; }

# Host tools this script needs, by Debian package.
need_pkgs=()
need() { command -v "$1" >/dev/null 2>&1 || need_pkgs+=("$2"); }
need qemu-system-x86_64 qemu-system-x86
need depmod kmod
need cpio cpio
need busybox busybox-static
need nvme nvme-cli
need mkfs.xfs xfsprogs
need mke2fs e2fsprogs
need losetup mount
need blkid util-linux
need dpkg-deb dpkg
if [ -f /bin/busybox ] && ! file -L /bin/busybox 2>/dev/null | grep -q 'statically linked'; then
	need_pkgs+=(busybox-static)
fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
	log "installing ${need_pkgs[*]}"
	if [ "$(id -u)" != 0 ]; then
		log "not root: cannot apt-get install ${need_pkgs[*]}"
		exit 3
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -qq "${need_pkgs[@]}" >&2 ||
		{ apt-get update -qq >&2 && apt-get install -y -qq "${need_pkgs[@]}" >&2; } ||
		{ log "apt-get install ${need_pkgs[*]} failed"; exit 3; }
fi

# Resolve the versioned kernel package behind the linux-image-cloud-amd64 metapackage.
kpkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
if [ -z "$kpkg" ]; then
	apt-get update -qq >&2 || true
	kpkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
fi
[ -n "$kpkg" ] || { log "cannot resolve linux-image-cloud-amd64 (apt-cache depends)"; exit 3; }
kver=${kpkg#linux-image-}
out=$cache/vm-$kver
# One build at a time: concurrent test runs share the cache.
mkdir -p "$cache"
exec 9>"$cache/.build.lock"
flock 9
# The stamp ties the image to this script's content: edit the script, get a rebuild.
stamp=$(sha256sum "$0" | cut -c1-16)
if [ -f "$out/initrd.gz" ] && [ -f "$out/vmlinuz" ] && [ "$(cat "$out/stamp" 2>/dev/null)" = "$stamp" ]; then
	echo "$out"
	exit 0
fi

log "building $out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"

# Kernel.
(cd "$work" && apt-get download "$kpkg" >&2) || { log "apt-get download $kpkg failed"; exit 3; }
dpkg-deb -x "$work"/"$kpkg"_*.deb "$work/k"
depmod -b "$work/k" "$kver"

root=$work/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,lib,lib64,etc/nvme,proc,sys,dev,tmp,run,mnt,var/lib}
ln -s lib "$root/usr/lib" 2>/dev/null || true

# Modules and their dependencies, resolved by the host's kmod against the unpacked tree.
mods="configfs nvmet nvmet-tcp nvme-fabrics nvme-tcp loop xfs libcrc32c crc32c_generic ext4 virtio_pci virtio_net virtio_blk"
for m in $mods; do
	modprobe -d "$work/k" -S "$kver" --show-depends "$m" 2>/dev/null || true
done | awk '$1 == "insmod" {print $2}' | sort -u | while read -r ko; do
	rel=${ko#"$work/k"}
	mkdir -p "$root$(dirname "$rel")"
	cp "$ko" "$root$rel"
done
for f in modules.builtin modules.builtin.modinfo modules.order; do
	[ -f "$work/k/lib/modules/$kver/$f" ] && cp "$work/k/lib/modules/$kver/$f" "$root/lib/modules/$kver/"
done
depmod -b "$root" "$kver"
cp "$work/k/boot/vmlinuz-$kver" "$work/vmlinuz"

# Busybox for the shell and coreutils; real tools where the plugin parses their output.
cp "$(command -v busybox)" "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list); do
	[ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
done
copy_bin() {
	local src=$1 dst=$root$1
	mkdir -p "$(dirname "$dst")"
	cp -L "$src" "$dst"
	ldd "$src" 2>/dev/null | awk '/=>/ {print $3} /^\t\/lib/ {print $1}' | while read -r lib; do
		[ -n "$lib" ] && [ -f "$lib" ] || continue
		mkdir -p "$root$(dirname "$lib")"
		cp -L "$lib" "$root$lib"
	done
}
tools="nvme mke2fs mkfs.ext4 mkfs.ext3 e2fsck fsck.ext4 resize2fs dumpe2fs tune2fs mkfs.xfs xfs_growfs xfs_repair xfs_io xfs_db
	losetup blkid blockdev mount umount fsck findmnt lsblk"
for t in $tools; do
	p=$(command -v "$t" 2>/dev/null) || { log "missing host tool $t"; exit 3; }
	# Busybox applets of the same name are replaced: mount-utils parses util-linux output.
	rm -f "$root/bin/$t" "$root/sbin/$t"
	copy_bin "$p"
done
# The dynamic loader is where binaries expect it.
cp -L /lib64/ld-linux-x86-64.so.2 "$root/lib64/"
# fsck and mkfs find their helpers through PATH; /etc/mtab is what util-linux reads.
ln -sf /proc/self/mounts "$root/etc/mtab"
echo "root:x:0:0:root:/:/bin/sh" >"$root/etc/passwd"
echo "root:x:0:" >"$root/etc/group"

cat >"$root/init" <<'EOF'
#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t tmpfs tmpfs /run
mount -t tmpfs -o size=80% tmpfs /tmp
modprobe configfs && mount -t configfs configfs /sys/kernel/config
for m in nvmet nvmet-tcp nvme-fabrics nvme-tcp loop xfs crc32c_generic virtio_pci virtio_net virtio_blk; do
	modprobe "$m" || echo "init: modprobe $m failed"
done
ip link set lo up
echo 4 >/proc/sys/kernel/printk
rc=1
if [ -x /test ]; then
	args=""
	[ -f /test.args ] && args=$(cat /test.args)
	cd /tmp
	CSI_HUB_VM=1 HOME=/tmp /test $args
	rc=$?
else
	echo "init: no /test in the initramfs"
fi
if [ "$rc" = 0 ]; then
	echo "CSI-HUB-VM-RESULT: PASS rc=0"
else
	echo "CSI-HUB-VM-RESULT: FAIL rc=$rc"
fi
sync
poweroff -f
EOF
chmod 755 "$root/init"

(cd "$root" && find . | cpio -o -H newc --quiet | gzip -6) >"$work/initrd.gz"
mv "$work/initrd.gz" "$out/initrd.gz"
mv "$work/vmlinuz" "$out/vmlinuz"
echo "$kver" >"$out/kernel-version"
echo "$stamp" >"$out/stamp"
log "built $out ($(du -h "$out/initrd.gz" | cut -f1) initrd)"
echo "$out"
