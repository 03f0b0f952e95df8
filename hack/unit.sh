#!/usr/bin/env bash
# make unit: every test that needs no control plane, kubelet or VM.
#
# Runs `go test -short -vet=off` with CSI_HUB_UNIT=1: the starters (test/cluster's Main,
# Shared, StartT; hack/cluster/up.sh through testutil.LockLocalCluster;
# test/vm) skip their tests loudly, and refuse to start anything if reached
# anyway, writing the attempt to $CSI_HUB_UNIT_SPAWN_LOG. Two checks make
# that a failure rather than a quiet skip:
#   1. the spawn log must be empty at the end;
#   2. a watcher samples the process table every 0.2 s and fails the run if a
#      descendant of `go test` is etcd, kube-apiserver, kube-controller-manager,
#      kube-scheduler, kubelet, containerd or qemu.
# Prints the wall time. Usage: hack/unit.sh [go test args, default: the packages below]
set -uo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${REPO_ROOT}"
GO="${GO:-go}"

tmp="$(mktemp -d)"
trap 'rm -rf "${tmp}"' EXIT
export CSI_HUB_UNIT=1 CSI_HUB_UNIT_SPAWN_LOG="${tmp}/spawns"
: >"${CSI_HUB_UNIT_SPAWN_LOG}"
# By default every package but the integration-only ones: */integration,
# test/swap, test/bench and test/sanity hold no test that runs without a
# cluster (each skips in unit mode), and linking their ~80 MB test binaries
# only to skip was ~10 s of make unit. CONTRIBUTING.md: unit tests go
# elsewhere. make test runs them all.
if [[ $# -eq 0 ]]; then
	mapfile -t pkgs < <("${GO}" list ./... | grep -Ev '/integration$|/test/(swap|bench|sanity)$')
	set -- "${pkgs[@]}"
fi

start=${SECONDS}
# -vet=off: make lint and make vet run the whole of go vet; here it would only
# repeat a subset of it for every package.
# -ldflags=-w: no DWARF in the test binaries, one per package and about
# 100 MB each (resizer's: 122 -> 101 MB); less to link and write every run.
# Stack traces keep their symbols. Measured 2026-12-03 on the 2-core machine,
# warm cache: building and starting every test binary with no test run takes
# 51 s of make unit's 83 s.
# -p 4 (go test's default is GOMAXPROCS, 2 here): several unit tests mostly
# wait (a hung driver's --timeout, a resync period, a helm subprocess), and
# with -p 2 such a test held one of the two build slots while it waited.
# Measured 2026-12-03 on the 2-core machine, warm cache: 90 s -> 67 s.
"${GO}" test -short -count=1 -vet=off -ldflags=-w -p 4 -timeout 5m "$@" &
gopid=$!

# watch: processes below gopid whose name is a cluster component or qemu
# (comm is cut at 15 characters: kube-controller, qemu-system-x86).
watch() {
	while kill -0 "${gopid}" 2>/dev/null; do
		ps -eo pid=,ppid=,comm= | awk -v root="${gopid}" '
			{ parent[$1] = $2; name[$1] = $3 }
			END {
				for (p in name) {
					if (name[p] !~ /^(etcd|kube-apiserver|kube-controller|kube-scheduler|kubelet|containerd|qemu-system-)/) continue
					for (a = parent[p]; a != "" && a != 0 && a != 1; a = parent[a])
						if (a == root) { print "pid " p " " name[p]; break }
				}
			}' >>"${tmp}/seen"
		sleep 0.2
	done
}
watch &
watcher=$!
wait "${gopid}"
rc=$?
wait "${watcher}"
elapsed=$((SECONDS - start))

fail=0
if [[ -s "${CSI_HUB_UNIT_SPAWN_LOG}" ]]; then
	echo "make unit: FAIL: a test reached a cluster or VM starter in unit mode (it must skip first):" >&2
	sort -u "${CSI_HUB_UNIT_SPAWN_LOG}" >&2
	fail=1
fi
if [[ -s "${tmp}/seen" ]]; then
	echo "make unit: FAIL: cluster or VM processes started under go test:" >&2
	sort -u "${tmp}/seen" >&2
	fail=1
fi
echo "make unit: go test exit ${rc}, ${elapsed}s wall, no cluster or VM process: $([[ ${fail} == 0 ]] && echo yes || echo NO)" >&2
[[ ${rc} -eq 0 && ${fail} -eq 0 ]]
