package resizer

import (
	"os"
	"testing"

	"github.com/csi-hub/csi-hub/test/cluster"
)

// One real control plane (etcd, kube-apiserver, kube-controller-manager) for
// the package. Kubernetes 1.34 serves VolumeAttributesClass (storage.k8s.io/v1)
// and RecoverVolumeExpansionFailure by default, so no feature gates are set.
// The PV controller's 15s resync would make every pre-bound PV+PVC pair wait
// up to 15s to bind; 1s keeps the tests quick.
func TestMain(m *testing.M) {
	os.Exit(cluster.Main(m, cluster.Options{
		ControllerManagerFlags: []string{"--pvclaimbinder-sync-period=1s"},
	}))
}
