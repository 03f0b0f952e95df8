package healthmonitor

import (
	"os"
	"testing"

	"github.com/csi-hub/csi-hub/test/cluster"
)

// One real control plane for the package; the PV controller's 1s resync lets
// pre-bound PV+PVC pairs bind at once.
func TestMain(m *testing.M) {
	os.Exit(cluster.Main(m, cluster.Options{ControllerManagerFlags: []string{"--pvclaimbinder-sync-period=1s"}}))
}
