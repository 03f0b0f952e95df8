#!/usr/bin/env bash
# Ensures staticcheck, used by `make lint`, is built into
# ${CSI_HUB_CACHE:-~/.cache/csi-hub}/staticcheck-<version>/bin, from the tools
# module test/tools/staticcheck (the honnef.co/go/tools version it requires).
#
# Usage: hack/ensure-staticcheck.sh            (prints the bin dir on the last line)
#        hack/ensure-staticcheck.sh --bin-dir  (print the bin dir and exit; builds nothing)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/cache.sh"

mod_dir="${REPO_ROOT}/test/tools/staticcheck"
module=honnef.co/go/tools
version="$(mod_version "${mod_dir}/go.mod" "${module}")"
[[ -n "${version}" ]] || { log "no ${module} version in ${mod_dir}/go.mod"; exit 1; }
bin_dir="${CSI_HUB_CACHE}/staticcheck-${version}/bin"
if [[ "${1:-}" == "--bin-dir" ]]; then
	echo "${bin_dir}"
	exit 0
fi
build_missing "${mod_dir}" "${bin_dir}" "-s -w" "staticcheck=${module}/cmd/staticcheck"
echo "${bin_dir}"
