# csi-hub Makefile. Targets: build unit lint vet test deps test-deps e2e nvme-hosts nvme-bench
# conformance demo cluster-up cluster-down images scale (CONTRIBUTING.md says which
# test runs where, hack/README.md what each script does).

SHELL := /usr/bin/env bash
GO ?= go

.PHONY: all
all: test

# ---- build ------------------------------------------------------------------
# build: every package compiles, and the two binaries as the Dockerfile builds
#        them (static, trimmed) in _output/bin.
.PHONY: build
VERSION ?= dev
build:
	$(GO) build ./...
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o _output/bin/csi-hub ./cmd/csi-hub
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o _output/bin/csi-hub-plugin ./cmd/csi-hub-plugin

# ---- test environment -------------------------------------------------------
# deps:      system packages (apt, only when missing) + test binaries.
# test-deps: only the binaries: kube-apiserver & co from k8s.io/kubernetes and
#            snapshot-controller, built once into $${CSI_HUB_CACHE:-~/.cache/csi-hub};
#            staticcheck for make lint.
.PHONY: deps test-deps install-deps
deps: install-deps test-deps

install-deps:
	hack/install-deps.sh

test-deps:
	hack/ensure-k8s.sh
	hack/ensure-snapshot-controller.sh
	hack/ensure-helm.sh
	hack/ensure-sidecars.sh snapshotter
	hack/ensure-sidecars.sh attacher
	hack/ensure-sidecars.sh provisioner
	hack/ensure-sidecars.sh resizer
	hack/ensure-e2e.sh
	hack/ensure-staticcheck.sh >/dev/null
	hack/vm/build.sh >/dev/null || [ $$? -eq 3 ]  # 3: this machine cannot provide the VM (test/vm says so)
	hack/vm/build-guests.sh >/dev/null  # the plugin and agent test/vm's multi-host VMs run

# ---- unit, lint, test ---------------------------------------------------------
# unit: every test that needs no control plane, kubelet or VM (go test -short
#       with CSI_HUB_UNIT=1: those tests skip, loudly); fails if etcd,
#       kube-apiserver, a kubelet or qemu was started anyway (hack/unit.sh).
# lint: gofmt -l, go vet, staticcheck (staticcheck.conf says what is off and why).
.PHONY: unit lint vet
unit:
	hack/unit.sh

vet:
	$(GO) vet ./...

lint: vet
	@out="$$(gofmt -l $$(git ls-files '*.go'))"; \
	  if [ -n "$$out" ]; then echo "gofmt -l: not formatted:"; echo "$$out"; exit 1; fi
	"$$(hack/ensure-staticcheck.sh | tail -n1)/staticcheck" ./...

.PHONY: test
# -timeout is per package: the packages that bring up the local kubelet cluster
# (test/e2e, test/conformance, test/swap) wait for each other, and the wait counts.
test: deps vet
	$(GO) test -count=1 -timeout 60m ./...

# ---- NVMe/TCP across hosts ---------------------------------------------------------
# nvme-hosts: issue 18's three-VM test bed (test/vm TestHosts): a storage host
#             (controller plugin, nvmet) and two nodes (node plugin, nvme-tcp) as
#             qemu TCG VMs on private links; the volume moves between nodes,
#             access control, multi-attach, force detach, storage host reboot,
#             link cut; and TestHostsStorageAndNode (two VMs). Both are also in
#             `make test`; this target runs only them (about 1.5 min idle).
.PHONY: nvme-hosts
nvme-hosts: test-deps
	$(GO) test -count=1 -timeout 30m -v -run '^TestHosts' ./test/vm/

# nvme-bench: issue 18's figures (test/vm BenchmarkHostsThroughput): O_DIRECT
#             sequential write/read and 4 KiB random-read IOPS on a 128 MiB
#             volume over NVMe/TCP from the storage host VM to a node VM, beside
#             the same on the storage host's loop device, and the ratio (TCG: the
#             ratio is the figure). Not in `make test`; about 1 min idle.
.PHONY: nvme-bench
nvme-bench: test-deps
	$(GO) test -count=1 -timeout 30m -v -run '^$$' -bench '^BenchmarkHostsThroughput$$' -benchtime 1x ./test/vm/

# ---- scale ----------------------------------------------------------------------
# scale: on a test/cluster control plane, BenchmarkScale (N = 0/1,000/5,000/10,000
#        bound volumes preloaded; csi-hub and the official provisioner, attacher,
#        resizer and snapshotter side by side: start-up, RSS, LIST/WATCH, idle CPU,
#        100 new claims) then BenchmarkScaleKill (kill -9 of csi-hub during 500
#        creations and 500 deletions with 5,000 volumes present: 0 leaked, 0
#        duplicated backend volumes). About 20 minutes; needs test-deps. The
#        benchmarks measure _output/bin/csi-hub (make build), or CSI_HUB_BENCH_BINARY.
.PHONY: scale
scale: build
	$(GO) test -run '^$$' -bench 'Scale$$' -benchtime 1x -timeout 60m ./test/bench/
	$(GO) test -run '^$$' -bench 'ScaleKill$$' -benchtime 1x -timeout 30m ./test/bench/

# ---- local cluster, images, e2e, demo -----------------------------------------
# cluster-up:   real single-node cluster (etcd, kube-apiserver, kcm, scheduler,
#               snapshot-controller, containerd, kubelet) with csi-hub deployed
#               from manifests/ (only the image names overridden). Needs root.
# cluster-down: removes all of it and leaves the machine clean.
# images:       image tarballs without Docker (go-containerregistry) in _output/images.
# e2e:          the e2e suite on that cluster (brings it up and down itself,
#               or reuses one from cluster-up when CSI_HUB_E2E_REUSE=1).
# demo:         cluster up + the PVC -> Pod -> snapshot -> restore -> resize story.
.PHONY: cluster-up cluster-down images e2e demo
cluster-up:
	hack/cluster/up.sh

cluster-down:
	hack/cluster/down.sh

images:
	$(GO) run ./hack/imagebuild -out _output/images

e2e:
	$(GO) test -count=1 -timeout 20m -v ./test/e2e/

demo:
	hack/demo.sh

# ---- upstream conformance -----------------------------------------------------
# conformance: the Kubernetes storage e2e suite (e2e.test v1.34.4, every
#              External.Storage spec, then the [Serial]/[Disruptive] ones) on the
#              real single-node cluster; prints passed/failed/skipped and every
#              skip's reason; JUnit reports in _output/conformance/full.
#              `make test` runs the named subset (go test ./test/conformance).
#              FOCUS='regex' re-runs only the specs whose text matches (one process).
.PHONY: conformance
conformance: test-deps
	CSI_HUB_CONFORMANCE=full CSI_HUB_CONFORMANCE_FOCUS='$(FOCUS)' $(GO) test -count=1 -timeout 170m -v -run TestExternalStorage ./test/conformance/
