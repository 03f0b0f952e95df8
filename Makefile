# csi-hub Makefile. Each block is owned by whoever wrote it; add new targets in
# their own block rather than editing others.

SHELL := /usr/bin/env bash
GO ?= go

.PHONY: all
all: test

# ---- test environment (owner: test/cluster) --------------------------------
# deps:      system packages (apt, only when missing) + test binaries.
# test-deps: only the binaries: kube-apiserver & co from k8s.io/kubernetes and
#            snapshot-controller, built once into $${CSI_HUB_CACHE:-~/.cache/csi-hub}.
.PHONY: deps test-deps install-deps
deps: install-deps test-deps

install-deps:
	hack/install-deps.sh

test-deps:
	hack/ensure-k8s.sh
	hack/ensure-snapshot-controller.sh

# ---- test (first version; the lead finalizes) -------------------------------
.PHONY: test vet
vet:
	$(GO) vet ./...

test: deps vet
	$(GO) test -count=1 -timeout 35m ./...
# ---------------------------------------------------------------------------
