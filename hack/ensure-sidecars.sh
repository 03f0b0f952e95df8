#!/usr/bin/env bash
# Ensures the official kubernetes-csi sidecars that the benchmarks compare
# csi-hub with are built into ${CSI_HUB_CACHE:-~/.cache/csi-hub}/sidecars/<name>-<version>/bin.
# Only external-attacher: external-provisioner's dependency
# sigs.k8s.io/sig-storage-lib-external-provisioner is not served by the module proxy here.
#
# Usage: hack/ensure-sidecars.sh   (prints the attacher's bin dir)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/cache.sh"

mod_dir="${REPO_ROOT}/test/tools/sidecars/attacher"
version="$(mod_version "${mod_dir}/go.mod" github.com/kubernetes-csi/external-attacher/v4)"
[[ -n "${version}" ]] || { log "no external-attacher/v4 version in ${mod_dir}/go.mod"; exit 1; }
dir="${CSI_HUB_CACHE}/sidecars/external-attacher-${version}"
build_missing "${mod_dir}" "${dir}/bin" "-s -w" \
	"csi-attacher=github.com/kubernetes-csi/external-attacher/v4/cmd/csi-attacher"
echo "${dir}/bin"
