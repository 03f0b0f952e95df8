#!/usr/bin/env bash
# Installs the Debian packages the project's tests need. Idempotent: when every
# package is already installed it does no network access at all.
#
# Usage: hack/install-deps.sh            (as root, or with sudo available)
set -euo pipefail

# The single list of system packages. Keep it grouped by what needs it.
packages=(
	# Control plane for integration tests (test/cluster): etcd for kube-apiserver.
	etcd-server
	# Block devices and filesystems: losetup/blkid/findmnt, mkfs.ext4/resize2fs, mkfs.xfs, mount.
	util-linux
	e2fsprogs
	xfsprogs
	mount
	kmod
	# A real node for node e2e tests: kubelet's container runtime and pod networking.
	containerd
	runc
	containernetworking-plugins
	# The local cluster and demo (hack/cluster, hack/demo.sh): PKI, health checks,
	# the kubernetes Service rule, /steps formatting.
	openssl
	curl
	jq
	iptables
	# NVMe/TCP tests run in a VM whose kernel has nvmet (the host kernel does not).
	qemu-system-x86
	qemu-utils
	cpio
	busybox-static
	nvme-cli
	# make conformance: the storage e2e suite's [Disruptive] specs stop and start
	# the kubelet over SSH (hack/cluster/node-ssh.sh runs a private sshd).
	openssh-server
	# test/e2e's /flow browser test: headless Chromium driven over the DevTools protocol.
	chromium
)

missing=()
for p in "${packages[@]}"; do
	# dpkg -s succeeds for packages that were removed but not purged; check the status word.
	if ! dpkg-query -W -f='${Status}' "${p}" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("${p}")
	fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
	echo "[install-deps] all ${#packages[@]} packages present"
	exit 0
fi

sudo=()
if [[ "$(id -u)" -ne 0 ]]; then
	command -v sudo >/dev/null || { echo "[install-deps] need root to install: ${missing[*]}" >&2; exit 1; }
	sudo=(sudo)
fi

echo "[install-deps] installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
# --no-install-recommends keeps qemu from pulling a desktop's worth of packages.
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "[install-deps] done"
