package fakedriver

import (
	"path/filepath"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"
)

// TestSanity runs the upstream csi-sanity conformance suite against the
// driver with every optional feature switched on, so the paths csi-hub's
// integration tests rely on are checked against the spec's reading by
// others, not only by this package's author.
func TestSanity(t *testing.T) {
	caps := append(DefaultControllerCapabilities(),
		csi.ControllerServiceCapability_RPC_GET_VOLUME,
		csi.ControllerServiceCapability_RPC_GET_SNAPSHOT,
		csi.ControllerServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
		csi.ControllerServiceCapability_RPC_PUBLISH_READONLY,
	)
	d := New(Options{
		ControllerCapabilities: caps,
		Attach:                 true,
		ListPublishedNodes:     true,
		NodeExpansionRequired:  true,
		Topology:               true,
		MaxVolumesPerNode:      8,
		CreateTargetPaths:      true,
		AbortConcurrent:        true,
		StateFile:              filepath.Join(t.TempDir(), "state.json"),
	})
	sock := socketPath(t)
	if err := d.Start(sock); err != nil {
		t.Fatal(err)
	}
	defer d.StopNow()

	cfg := sanity.NewTestConfig()
	cfg.Address = "unix:" + sock
	dir := t.TempDir()
	cfg.TargetPath = filepath.Join(dir, "mount")
	cfg.StagingPath = filepath.Join(dir, "staging")
	cfg.TestVolumeSize = 16 * mib
	cfg.TestVolumeExpandSize = 32 * mib
	cfg.TestVolumeMutableParameters = map[string]string{"iops": "3000"}
	cfg.IdempotentCount = 3
	cfg.TestNodeVolumeAttachLimit = true
	sanity.Test(t, cfg)

	if left := d.Volumes(); len(left) != 0 {
		t.Errorf("csi-sanity cleaned up, yet %d volumes remain in the backend: %+v", len(left), left)
	}
}
