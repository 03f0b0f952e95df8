# Shared helpers for the ensure-* scripts. Source, do not execute.

# Build outputs live outside the repo so that `git clean`, worktrees and
# concurrent checkouts share one copy of the (slow to build) binaries.
CSI_HUB_CACHE="${CSI_HUB_CACHE:-${HOME}/.cache/csi-hub}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

# mod_version <go.mod> <module path>: prints the version a go.mod requires.
mod_version() {
	awk -v m="$2" '($1 == m && $2 ~ /^v/) { print $2; exit } ($1 == "require" && $2 == m) { print $3; exit }' "$1"
}

log() { echo "[$(basename "$0")] $*" >&2; }

# tool_go <build|test> [flags] <packages>: the go command of every tool
# build, so that all of them share its flags. No cgo; no DWARF (-s -w drops it
# from the binaries anyway) and GOGC=400 for the compiler: a cold csi-resizer
# build took 258-270 s against 287-326 s without (alternating, empty build
# caches, 2026-12-03). The same gcflags everywhere keep the packages that the
# k8s and e2e tools modules share compiled once in the Go build cache.
tool_go() {
	CGO_ENABLED=0 GOGC=400 go "$1" -trimpath -gcflags=all=-dwarf=false "${@:2}"
}

# build_missing <tools module dir> <bin dir> <ldflags> <name=package>...
# Builds only the binaries absent from <bin dir>. Holds an exclusive flock on
# the bin dir so that test packages started in parallel build once and the
# others wait and then find everything present.
build_missing() {
	local mod_dir="$1" bin_dir="$2" ldflags="$3"
	shift 3
	mkdir -p "${bin_dir}"
	exec {lock_fd}>"${bin_dir}/.lock"
	if ! flock -n "${lock_fd}"; then
		log "waiting for another build holding ${bin_dir}/.lock"
		flock "${lock_fd}"
	fi
	local -a names=() pkgs=()
	local spec
	for spec in "$@"; do
		if [[ -x "${bin_dir}/${spec%%=*}" ]]; then
			log "present: ${bin_dir}/${spec%%=*}"
		else
			names+=("${spec%%=*}")
			pkgs+=("${spec#*=}")
		fi
	done
	if [[ ${#pkgs[@]} -eq 0 ]]; then
		exec {lock_fd}>&-
		return 0
	fi
	# Build into a scratch dir and rename, so an interrupted build never leaves
	# a truncated binary that a later run would mistake for a good one.
	local tmp
	tmp="$(mktemp -d "${bin_dir}/.build.XXXXXX")"
	log "building ${names[*]} (from ${mod_dir}) into ${bin_dir}; a cold build takes several minutes"
	local start=${SECONDS}
	if ! (cd "${mod_dir}" && GOFLAGS="-mod=readonly -buildvcs=false" tool_go build -ldflags "${ldflags}" -o "${tmp}/" "${pkgs[@]}"); then
		rm -rf "${tmp}"
		exec {lock_fd}>&-
		log "FAILED to build ${names[*]}"
		return 1
	fi
	local i
	for i in "${!names[@]}"; do
		# go build names each output after the package's last path element.
		mv -f "${tmp}/$(basename "${pkgs[$i]}")" "${bin_dir}/${names[$i]}"
	done
	rm -rf "${tmp}"
	exec {lock_fd}>&-
	log "built ${names[*]} in $((SECONDS - start))s"
}
