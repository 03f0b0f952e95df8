// Package chart tests the Helm chart charts/csi-hub without a cluster: helm lint,
// `helm template` snapshots for each supported set of values, and that the chart's
// defaults render exactly what `kubectl kustomize manifests/` renders (so the two
// ways to install never drift apart). helm and kubectl are the ones `make test-deps`
// built into the cache (hack/ensure-helm.sh, hack/ensure-k8s.sh).
package chart
