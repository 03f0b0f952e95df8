#!/usr/bin/env bash
# Ensures the helm CLI used by the chart tests is built into
# ${CSI_HUB_CACHE:-~/.cache/csi-hub}/helm-<version>/bin, from the tools module
# test/tools/helm (the helm.sh/helm/v4 version it requires). No download site.
#
# Usage: hack/ensure-helm.sh            (prints the bin dir on the last line)
#        hack/ensure-helm.sh --bin-dir  (print the bin dir and exit; builds nothing)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/cache.sh"

mod_dir="${REPO_ROOT}/test/tools/helm"
module=helm.sh/helm/v4
version="$(mod_version "${mod_dir}/go.mod" "${module}")"
[[ -n "${version}" ]] || { log "no ${module} version in ${mod_dir}/go.mod"; exit 1; }
bin_dir="${CSI_HUB_CACHE}/helm-${version}/bin"
if [[ "${1:-}" == "--bin-dir" ]]; then
	echo "${bin_dir}"
	exit 0
fi
# helm version reports what it was built as.
ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=${version}"
build_missing "${mod_dir}" "${bin_dir}" "${ldflags}" "helm=${module}/cmd/helm"
echo "${bin_dir}"
