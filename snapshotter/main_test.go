package snapshotter_test

import (
	"os"
	"testing"

	"github.com/csi-hub/csi-hub/test/cluster"
)

// The *_integration_test.go files (package snapshotter_test) test the
// snapshotter against a real control plane (etcd, kube-apiserver,
// kube-controller-manager, the snapshot CRDs and the real snapshot-controller
// from test/cluster) and test/fakedriver over a real CSI socket, with
// csi-hub's core running in-process (internal/hubtest). The unit tests beside
// them (package snapshotter) use fakes only and run in every mode.
//
// This is the binary's one TestMain, for both packages. In unit mode
// (CSI_HUB_UNIT=1 or -short) cluster.Main starts nothing and every test that
// asks cluster.Shared or cluster.StartT for a control plane skips. Every
// informer runs with client-go's own feature gates (WatchListClient on): the
// fake-backed ones of the unit tests are registered with fakeInformer, which
// tells the reflector the fake cannot stream lists.
func TestMain(m *testing.M) {
	os.Exit(cluster.Main(m, cluster.Options{WithSnapshotController: true}))
}
