#!/usr/bin/env bash
# Ensures the Kubernetes e2e suite binary (e2e.test), the ginkgo CLI, the agnhost test-image
# binary and groupsnapshot.test (upstream's group snapshot suite for an external
# driver) exist in ${CSI_HUB_CACHE:-~/.cache/csi-hub}/e2e-<version>/bin, building
# them from the tools module test/tools/e2e (version = the k8s.io/kubernetes it
# requires; regenerate with hack/gen-e2e-tools-mod.sh). `make conformance` and
# test/conformance only look them up; they never build them.
#
# Usage: hack/ensure-e2e.sh            (prints the bin dir)
#        hack/ensure-e2e.sh --bin-dir  (print the bin dir without building)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/cache.sh"

mod_dir="${REPO_ROOT}/test/tools/e2e"
version="$(mod_version "${mod_dir}/go.mod" k8s.io/kubernetes)"
[[ -n "${version}" ]] || { log "no k8s.io/kubernetes version in ${mod_dir}/go.mod"; exit 1; }
bin_dir="${CSI_HUB_CACHE}/e2e-${version}/bin"
if [[ "${1:-}" == "--bin-dir" ]]; then
	echo "${bin_dir}"
	exit 0
fi

# Version stamping as in hack/ensure-k8s.sh: the suite compares it with the server's.
major="${version#v}"; major="${major%%.*}"
minor="${version#v*.}"; minor="${minor%%.*}"
ldflags="-s -w"
for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
	ldflags+=" -X ${pkg}.gitVersion=${version} -X ${pkg}.gitMajor=${major} -X ${pkg}.gitMinor=${minor}"
	ldflags+=" -X ${pkg}.gitTreeState=clean"
done

# agnhost and the ginkgo CLI (parallel runs): plain commands.
build_missing "${mod_dir}" "${bin_dir}" "${ldflags}" "agnhost=k8s.io/kubernetes/test/images/agnhost" \
	"ginkgo=github.com/onsi/ginkgo/v2/ginkgo"

# hello-populator: the image upstream's "should provision storage with any
# volume data source" spec deploys (registry.k8s.io/sig-storage/hello-populator:v1.0.1,
# test/e2e/testing-manifests/storage-csi/any-volume-datasource). The module
# proxy here refuses lib-volume-populator v1.0.1; v1.2.0's example has the same
# flags (--mode, --image-name, --namespace, --file-name, --file-contents) and
# populates the same way. Built in a copy of the module with its own go.mod and
# go.sum (its Kubernetes v0.25 dependencies come from the module proxy).
populator_version=v1.2.0
if [[ -x "${bin_dir}/hello-populator" ]]; then
	log "present: ${bin_dir}/hello-populator"
else
	src="$(cd /tmp && GOFLAGS= go mod download -json "github.com/kubernetes-csi/lib-volume-populator@${populator_version}" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
	[[ -d "${src}" ]] || { log "FAILED to download lib-volume-populator ${populator_version}"; exit 1; }
	tmp="$(mktemp -d "${bin_dir}/.build.XXXXXX")"
	cp -r "${src}/." "${tmp}/src" && chmod -R u+w "${tmp}/src"
	log "building hello-populator (lib-volume-populator ${populator_version}) into ${bin_dir}"
	if ! (cd "${tmp}/src" && GOFLAGS="-mod=mod -buildvcs=false" \
		tool_go build -ldflags "-s -w" -o "${tmp}/hello-populator" ./example/hello-populator); then
		rm -rf "${tmp}"
		log "FAILED to build hello-populator"
		exit 1
	fi
	mv -f "${tmp}/hello-populator" "${bin_dir}/hello-populator"
	rm -rf "${tmp}"
fi

# e2e.test is a test binary (`go test -c`), which build_missing cannot make;
# same lock, scratch-dir-and-rename discipline.
exec {lock_fd}>"${bin_dir}/.lock"
if ! flock -n "${lock_fd}"; then
	log "waiting for another build holding ${bin_dir}/.lock"
	flock "${lock_fd}"
fi
if [[ -x "${bin_dir}/e2e.test" ]]; then
	log "present: ${bin_dir}/e2e.test"
else
	tmp="$(mktemp -d "${bin_dir}/.build.XXXXXX")"
	log "building e2e.test (k8s.io/kubernetes/test/e2e ${version}) into ${bin_dir}; a cold build takes 10+ minutes on 2 cores"
	start=${SECONDS}
	if ! (cd "${mod_dir}" && GOFLAGS="-mod=readonly -buildvcs=false" \
		tool_go test -c -ldflags "${ldflags}" -o "${tmp}/e2e.test" k8s.io/kubernetes/test/e2e); then
		rm -rf "${tmp}"
		log "FAILED to build e2e.test"
		exit 1
	fi
	mv -f "${tmp}/e2e.test" "${bin_dir}/e2e.test"
	rm -rf "${tmp}"
	log "built e2e.test in $((SECONDS - start))s"
fi

# groupsnapshot.test: this repository's e2e test binary (test/tools/e2e/groupsnapshot)
# that runs upstream's group snapshot suite for an external driver, which v1.34.4's
# e2e.test cannot (see its package doc). Its source is ours and changes, so it is
# rebuilt whenever the hash of its source and the module's go.mod/go.sum differs from
# the one recorded beside it.
gs_sum="$(cd "${mod_dir}" && cat go.mod go.sum groupsnapshot/*.go | sha256sum | cut -d' ' -f1)"
if [[ -x "${bin_dir}/groupsnapshot.test" && "$(cat "${bin_dir}/groupsnapshot.test.sum" 2>/dev/null)" == "${gs_sum}" ]]; then
	log "present: ${bin_dir}/groupsnapshot.test"
else
	tmp="$(mktemp -d "${bin_dir}/.build.XXXXXX")"
	log "building groupsnapshot.test (test/tools/e2e/groupsnapshot) into ${bin_dir}"
	start=${SECONDS}
	if ! (cd "${mod_dir}" && GOFLAGS="-mod=readonly -buildvcs=false" \
		tool_go test -c -ldflags "${ldflags}" -o "${tmp}/groupsnapshot.test" ./groupsnapshot); then
		rm -rf "${tmp}"
		log "FAILED to build groupsnapshot.test"
		exit 1
	fi
	mv -f "${tmp}/groupsnapshot.test" "${bin_dir}/groupsnapshot.test"
	echo "${gs_sum}" >"${bin_dir}/groupsnapshot.test.sum"
	rm -rf "${tmp}"
	log "built groupsnapshot.test in $((SECONDS - start))s"
fi
exec {lock_fd}>&-
echo "${bin_dir}"
