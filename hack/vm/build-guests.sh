#!/usr/bin/env bash
# Builds the static binaries the multi-host NVMe/TCP VM test (test/vm
# TestHosts*) puts into its VMs' initramfs, into _output/vm/ of this tree:
#   csi-hub-plugin   cmd/csi-hub-plugin (the storage host's controller, the nodes' node plugin)
#   hostagent        test/vm/hostagent  (each VM's /test: links, disk, exec, the CSI socket on TCP)
#   guest.test       test/vm/guest's tests (tag vmguest), the single-VM tests' /test
# plus "sources" (the module's Go files they are built from, and go.mod/go.sum)
# and "stamp" (sha256 over those files' sha256sum lines), which the test
# recomputes to refuse stale binaries. Called by `make test-deps`; go's build
# cache makes a warm run take about a second. Prints the directory last.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
out=$repo/_output/vm
mkdir -p "$out"
exec 9>"$out/.lock"
flock 9
export CGO_ENABLED=0 GOOS=linux GOARCH=amd64
go build -trimpath -ldflags "-s -w" -o "$out/csi-hub-plugin.tmp" ./cmd/csi-hub-plugin
go build -trimpath -ldflags "-s -w" -o "$out/hostagent.tmp" ./test/vm/hostagent
go test -c -tags vmguest -trimpath -ldflags "-s -w" -o "$out/guest.test.tmp" ./test/vm/guest
{
	go list -deps -test -tags vmguest -f '{{if .Module}}{{if .Module.Main}}{{$d := .Dir}}{{range .GoFiles}}{{$d}}/{{.}}
{{end}}{{range .TestGoFiles}}{{$d}}/{{.}}
{{end}}{{range .XTestGoFiles}}{{$d}}/{{.}}
{{end}}{{range .EmbedFiles}}{{$d}}/{{.}}
{{end}}{{end}}{{end}}' ./cmd/csi-hub-plugin ./test/vm/hostagent ./test/vm/guest
	echo "$repo/go.mod"
	echo "$repo/go.sum"
} | grep -v '^$' | grep -v '//' | sort -u >"$out/sources.tmp" # '//': go list -test's generated files (in the build cache)
tr '\n' '\0' <"$out/sources.tmp" | xargs -0 sha256sum | sha256sum | cut -c1-16 >"$out/stamp.tmp"
for f in csi-hub-plugin hostagent guest.test sources stamp; do mv "$out/$f.tmp" "$out/$f"; done
echo "build-guests.sh: $out stamp $(cat "$out/stamp")" >&2
echo "$out"
