// Package conformance runs the Kubernetes storage e2e suite (e2e.test from
// k8s.io/kubernetes, External.Storage specs) against block.csi-hub.io with
// csi-hub as its sidecars, on the real single-node cluster of hack/cluster,
// as upstream CSI drivers are judged.
//
// go test ./test/conformance runs the named subset that covers every test
// pattern (CI, `make test`); CSI_HUB_CONFORMANCE=full (`make conformance`)
// runs every External.Storage spec, then the [Serial]/[Disruptive] ones. A
// failed spec fails the test, and so does a skip that neither allowedSkips
// nor a detected machine limit explains. The binaries come from
// `make test-deps` (hack/ensure-e2e.sh); the test never builds them.
package conformance
