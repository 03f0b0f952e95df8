#!/usr/bin/env bash
# Ensures the Kubernetes control-plane binaries used by integration tests exist in
# ${CSI_HUB_CACHE:-~/.cache/csi-hub}/k8s-<version>/bin, building only the missing
# ones from the tools module test/tools/k8s (version = the k8s.io/kubernetes it requires).
#
# Usage: hack/ensure-k8s.sh [binary...]   (default: all of them)
#        hack/ensure-k8s.sh --bin-dir     (print the bin dir and exit)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/cache.sh"

mod_dir="${REPO_ROOT}/test/tools/k8s"
version="$(mod_version "${mod_dir}/go.mod" k8s.io/kubernetes)"
[[ -n "${version}" ]] || { log "no k8s.io/kubernetes version in ${mod_dir}/go.mod"; exit 1; }
bin_dir="${CSI_HUB_CACHE}/k8s-${version}/bin"

if [[ "${1:-}" == "--bin-dir" ]]; then
	echo "${bin_dir}"
	exit 0
fi

all=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)
wanted=("$@")
[[ ${#wanted[@]} -gt 0 ]] || wanted=("${all[@]}")

specs=()
for b in "${wanted[@]}"; do
	[[ " ${all[*]} " == *" ${b} "* ]] || { log "unknown binary ${b}; known: ${all[*]}"; exit 2; }
	specs+=("${b}=k8s.io/kubernetes/cmd/${b}")
done

# Same version stamping as upstream's hack/lib/version.sh, so that kubectl and
# the API server's /version report a parseable semantic version.
major="${version#v}"; major="${major%%.*}"
minor="${version#v*.}"; minor="${minor%%.*}"
ldflags="-s -w"
for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
	ldflags+=" -X ${pkg}.gitVersion=${version} -X ${pkg}.gitMajor=${major} -X ${pkg}.gitMinor=${minor}"
	ldflags+=" -X ${pkg}.gitTreeState=clean -X ${pkg}.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
done

build_missing "${mod_dir}" "${bin_dir}" "${ldflags}" "${specs[@]}"
echo "${bin_dir}"
