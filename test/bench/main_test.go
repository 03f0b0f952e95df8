package bench

import (
	"os"
	"testing"

	"github.com/csi-hub/csi-hub/test/cluster"
)

func TestMain(m *testing.M) {
	// kube-controller-manager binds every PVC with four writes of its own; its
	// default budget (QPS 20) would be what is measured, not csi-hub.
	os.Exit(cluster.Main(m, cluster.Options{ControllerManagerFlags: []string{"--kube-api-qps=500", "--kube-api-burst=1000"}}))
}
