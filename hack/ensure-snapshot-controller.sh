#!/usr/bin/env bash
# Ensures snapshot-controller and the snapshot CRDs are in
# ${CSI_HUB_CACHE:-~/.cache/csi-hub}/snapshot-controller-<version>/{bin,crd}.
#
# The binary is built from the tools module test/tools/snapshot. The CRDs come
# from the module github.com/kubernetes-csi/external-snapshotter/client/v8 at the
# version the project's go.mod requires (its config/crd/ directory), so the CRDs
# always match the typed clients the project is compiled against.
#
# Usage: hack/ensure-snapshot-controller.sh [--dir]   (--dir: print the cache dir and exit)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/cache.sh"

mod_dir="${REPO_ROOT}/test/tools/snapshot"
version="$(mod_version "${mod_dir}/go.mod" github.com/kubernetes-csi/external-snapshotter/v8)"
[[ -n "${version}" ]] || { log "no external-snapshotter/v8 version in ${mod_dir}/go.mod"; exit 1; }
dir="${CSI_HUB_CACHE}/snapshot-controller-${version}"

if [[ "${1:-}" == "--dir" ]]; then
	echo "${dir}"
	exit 0
fi

build_missing "${mod_dir}" "${dir}/bin" "-s -w" \
	"snapshot-controller=github.com/kubernetes-csi/external-snapshotter/v8/cmd/snapshot-controller"

client=github.com/kubernetes-csi/external-snapshotter/client/v8
client_version="$(mod_version "${REPO_ROOT}/go.mod" "${client}")"
crd_dir="${dir}/crd-client-${client_version}"
if [[ ! -f "${crd_dir}/.complete" ]]; then
	client_dir="$(cd "${REPO_ROOT}" && go mod download -json "${client}@${client_version}" |
		sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
	[[ -d "${client_dir}/config/crd" ]] || { log "no config/crd in ${client}@${client_version} (${client_dir})"; exit 1; }
	mkdir -p "${crd_dir}"
	# Only the CRD manifests; kustomization.yaml is not a Kubernetes object.
	cp "${client_dir}"/config/crd/*.storage.k8s.io_*.yaml "${crd_dir}/"
	chmod u+w "${crd_dir}"/*.yaml
	touch "${crd_dir}/.complete"
	log "copied CRDs of ${client}@${client_version} into ${crd_dir}"
else
	log "present: ${crd_dir}"
fi
echo "${dir}"
