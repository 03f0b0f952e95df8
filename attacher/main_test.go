package attacher_test

import (
	"os"
	"testing"

	"github.com/csi-hub/csi-hub/test/cluster"
)

// The *_integration_test.go files (package attacher_test) test the attacher
// against a real control plane (etcd, kube-apiserver and
// kube-controller-manager from test/cluster): the attach/detach controller
// creates and deletes the VolumeAttachments, the hub runs in-process, and the
// CSI driver is test/fakedriver (capabilities switched per test) or the
// companion plugin. The unit tests beside them (package attacher) use fakes
// only and run in every mode.
//
// This is the binary's one TestMain, for both packages. In unit mode
// (CSI_HUB_UNIT=1 or -short) cluster.Main starts nothing and every test that
// asks cluster.Shared for the control plane skips.
func TestMain(m *testing.M) {
	os.Exit(cluster.Main(m, cluster.Options{
		// Lets status.attachError/detachError carry the gRPC code, as
		// upstream does when the gate is on.
		FeatureGates: map[string]bool{"MutableCSINodeAllocatableCount": true},
		// Detach as soon as the node reports the volume unused, and bind
		// claims without waiting for the binder's 15s resync.
		ControllerManagerFlags: []string{"--attach-detach-reconcile-sync-period=5s", "--pvclaimbinder-sync-period=1s"},
	}))
}
