package provisioner

import (
	"os"
	"testing"

	"github.com/csi-hub/csi-hub/test/cluster"
)

// One real control plane (etcd, kube-apiserver, kube-controller-manager) for
// the package, with the snapshot CRDs and snapshot-controller for restores.
// There is no scheduler: tests set selected-node as it would.
func TestMain(m *testing.M) {
	os.Exit(cluster.Main(m, cluster.Options{WithSnapshotController: true}))
}
