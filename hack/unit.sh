#!/usr/bin/env bash
# make unit: every test that needs no control plane, kubelet or VM.
#
# Builds the test binaries with `go test -c`, then runs each with -test.short
# and CSI_HUB_UNIT=1: the starters (test/cluster's Main, Shared, StartT;
# hack/cluster/up.sh through testutil.LockLocalCluster; test/vm) skip their
# tests loudly, and refuse to start anything if reached anyway, writing the
# attempt to $CSI_HUB_UNIT_SPAWN_LOG. Two checks make that a failure rather
# than a quiet skip:
#   1. the spawn log must be empty at the end;
#   2. a watcher samples the process table every 0.2 s and fails the run if a
#      descendant of this script is etcd, kube-apiserver,
#      kube-controller-manager, kube-scheduler, kubelet, containerd or qemu.
# Prints the wall time. Usage: hack/unit.sh [packages, default: the ones below]
set -uo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${REPO_ROOT}"
GO="${GO:-go}"
JOBS="${CSI_HUB_UNIT_JOBS:-4}"

tmp="$(mktemp -d)"
trap 'rm -rf "${tmp}"' EXIT
export CSI_HUB_UNIT=1 CSI_HUB_UNIT_SPAWN_LOG="${tmp}/spawns"
: >"${CSI_HUB_UNIT_SPAWN_LOG}"
# By default every package but the integration-only ones: test/swap,
# test/bench and test/sanity hold no test that runs without a cluster (each
# skips in unit mode), and linking their test binaries only to skip costs
# seconds each. CONTRIBUTING.md: unit tests go elsewhere.
# make test runs them all.
[[ $# -gt 0 ]] || set -- ./...
mapfile -t pkgs < <("${GO}" list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}} {{.Dir}}{{end}}' "$@" |
	grep -Ev '/test/(swap|bench|sanity) ')
start=${SECONDS}

# Build: `go test -c` into _output/unit/, where each binary stays: go build
# links again only a binary whose package or dependencies changed (its build
# ID no longer matches). go test links every binary again on every run: ~4 s
# of CPU for each of the ~100 MB binaries, 31 of them, which was most of
# make unit's 90 s.
# -vet=off: make lint and make vet run the whole of go vet.
# What makes linking a test binary cheaper (measured on resizer.test, 2 cores):
# -tags grpcnotrace: gRPC without golang.org/x/net/trace, whose html/template
#   keeps every exported method of every linked type (reflect MethodByName):
#   the binary goes from 84 to 42 MB and its link from 4.6 to 3.2 s. The
#   tests never turn gRPC tracing on (grpc.EnableTracing), so none depends
#   on it; make test builds without the tag.
# -gcflags=all=-dwarf=false -ldflags='-s -w': no DWARF made, read or written,
#   no symbol table; stack traces keep function names and lines (pclntab).
# -trimpath: a compiled package does not depend on where the checkout is, so
#   a second clone or worktree reuses what the first compiled (tests find the
#   checkout with internal/checkout, not runtime.Caller).
# GOGC=400 for the compiler and linker (not the tests): ~15% less build time
#   for ~1.1 GB peak memory per process, 2 at a time.
# These flags key their own build cache entries: the first make unit on a
# machine compiles every dependency once more (~5 min on 2 cores).
bindir="${REPO_ROOT}/_output/unit"
mkdir -p "${bindir}" "${tmp}/out"
if ! GOGC=400 "${GO}" test -c -vet=off -trimpath -tags grpcnotrace -gcflags=all=-dwarf=false -ldflags='-s -w' \
	-o "${bindir}/" $(printf '%s\n' "${pkgs[@]}" | cut -d' ' -f1); then
	echo "make unit: FAIL: building the test binaries" >&2
	exit 1
fi
built=$((SECONDS - start))

# Run: each binary in its package's directory, as go test does, JOBS at a
# time (more than the 2 cores: several tests mostly wait on a timeout, a
# resync period or a helm subprocess). Not while go still links: on 2 cores
# tests running beside the build made the whole slower (68 s against 54 s
# after a change to internal/hub's API).
run_one() {
	local pkg=$1 dir=$2 bin t0 rc
	bin="${UNIT_BIN}/$(basename "${pkg}").test" # go test -c's name for it
	t0=${EPOCHREALTIME}
	(cd "${dir}" && "${bin}" -test.short -test.timeout=5m -test.paniconexit0) >"${UNIT_TMP}/out/${pkg//\//_}" 2>&1
	rc=$?
	awk -v rc="${rc}" -v pkg="${pkg}" -v t0="${t0}" -v t1="${EPOCHREALTIME}" \
		'BEGIN { printf "%s %s %.3f\n", rc, pkg, t1 - t0 }' >>"${UNIT_TMP}/results"
}
export -f run_one
export UNIT_TMP="${tmp}" UNIT_BIN="${bindir}"
: >"${tmp}/results"
# Longest first, by the times of the last run (_output/unit/.times; a new
# package counts as long): the slow waits start at once instead of last.
times="${bindir}/.times"
printf '%s\n' "${pkgs[@]}" |
	awk -v times="${times}" 'BEGIN { while ((getline l < times) > 0) { split(l, f, " "); took[f[1]] = f[2] } }
		{ print ($1 in took ? took[$1] : 999), $0 }' |
	sort -k1,1 -rn | cut -d' ' -f2- |
	xargs -P "${JOBS}" -L 1 bash -c 'run_one "$@"' _ &
runner=$!

# watch: processes below this script whose name is a cluster component or
# qemu (comm is cut at 15 characters: kube-controller, qemu-system-x86).
watch() {
	while kill -0 "${runner}" 2>/dev/null; do
		ps -eo pid=,ppid=,comm= | awk -v root="$$" '
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
wait "${runner}"
wait "${watcher}"
elapsed=$((SECONDS - start))

# Report as go test does: the output of a failed package, a line each.
rc=0
while read -r code pkg took; do
	if [[ ${code} == 0 ]]; then
		printf 'ok  \t%s\t%ss\n' "${pkg}" "${took}"
	else
		cat "${tmp}/out/${pkg//\//_}"
		printf 'FAIL\t%s\t%ss (exit %s)\n' "${pkg}" "${took}" "${code}"
		rc=1
	fi
done < <(sort -k2 "${tmp}/results")
# This run's times replace the last ones of the same packages only (a run of
# a few packages keeps the order of the rest).
{ cat "${times}" 2>/dev/null; awk '{ print $2, $3 }' "${tmp}/results"; } |
	awk '{ took[$1] = $2 } END { for (p in took) print p, took[p] }' >"${tmp}/times" && mv "${tmp}/times" "${times}"
ran=$(wc -l <"${tmp}/results")
if [[ ${ran} -ne ${#pkgs[@]} ]]; then
	echo "make unit: FAIL: ${ran} of ${#pkgs[@]} test binaries reported" >&2
	rc=1
fi

fail=0
if [[ -s "${CSI_HUB_UNIT_SPAWN_LOG}" ]]; then
	echo "make unit: FAIL: a test reached a cluster or VM starter in unit mode (it must skip first):" >&2
	sort -u "${CSI_HUB_UNIT_SPAWN_LOG}" >&2
	fail=1
fi
if [[ -s "${tmp}/seen" ]]; then
	echo "make unit: FAIL: cluster or VM processes started under make unit:" >&2
	sort -u "${tmp}/seen" >&2
	fail=1
fi
echo "make unit: ${#pkgs[@]} packages, tests exit ${rc}, ${elapsed}s wall (${built}s building), no cluster or VM process: $([[ ${fail} == 0 ]] && echo yes || echo NO)" >&2
[[ ${rc} -eq 0 && ${fail} -eq 0 ]]
