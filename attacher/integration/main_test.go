package integration

import (
	"os"
	"testing"

	"github.com/csi-hub/csi-hub/test/cluster"
)

func TestMain(m *testing.M) {
	os.Exit(cluster.Main(m, cluster.Options{
		// Lets status.attachError/detachError carry the gRPC code, as
		// upstream does when the gate is on.
		FeatureGates: map[string]bool{"MutableCSINodeAllocatableCount": true},
		// Detach as soon as the node reports the volume unused.
		// and bind claims without waiting for the binder's 15s resync.
		ControllerManagerFlags: []string{"--attach-detach-reconcile-sync-period=5s", "--pvclaimbinder-sync-period=1s"},
	}))
}
