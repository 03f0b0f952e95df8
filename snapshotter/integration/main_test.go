// Package integration tests the snapshotter against a real control plane
// (etcd, kube-apiserver, kube-controller-manager, the snapshot CRDs and the
// real snapshot-controller from test/cluster) and test/fakedriver over a real
// CSI socket, with csi-hub's core running in-process (internal/hubtest).
package integration

import (
	"os"
	"testing"

	"github.com/csi-hub/csi-hub/test/cluster"
)

func TestMain(m *testing.M) {
	os.Exit(cluster.Main(m, cluster.Options{WithSnapshotController: true}))
}
