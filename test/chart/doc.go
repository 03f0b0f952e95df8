// Package chart tests the Helm chart charts/csi-hub without a cluster: helm lint,
// `helm template` snapshots for each supported set of values, and that the chart's
// defaults render exactly what `kubectl kustomize manifests/` renders (so the two
// ways to install never drift apart). helm and kubectl are the ones `make test-deps`
// built into the cache (hack/ensure-helm.sh, hack/ensure-k8s.sh). They only read
// the chart and manifests/ (overlays go to the test's own temp dir), so every
// test and subtest runs with t.Parallel.
package chart
