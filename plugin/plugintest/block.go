package plugintest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

// WithBlockDevice publishes volume id as a raw block device the way the
// kubelet does for a pod (ControllerPublish, NodeStage, NodePublish on
// Options.Node; real loop devices), runs fn on the device file and
// unpublishes again. dir holds the staging and target paths.
func (d *Driver) WithBlockDevice(t testing.TB, id string, volCtx map[string]string, dir string, fn func(*os.File)) {
	t.Helper()
	ctx := t.Context()
	vc := &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER}}
	staging, target := filepath.Join(dir, "staging", id), filepath.Join(dir, "pods", id, "dev")
	for _, p := range []string{staging, filepath.Dir(target)} {
		if err := os.MkdirAll(p, 0o750); err != nil {
			t.Fatal(err)
		}
	}
	ctrl, node := d.ControllerClient(), d.NodeClient()
	pub, err := ctrl.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: d.NodeID,
		VolumeCapability: vc, VolumeContext: volCtx})
	if err != nil {
		t.Fatalf("ControllerPublishVolume %s: %v", id, err)
	}
	defer func() {
		if _, err := ctrl.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: id, NodeId: d.NodeID}); err != nil {
			t.Errorf("ControllerUnpublishVolume %s: %v", id, err)
		}
	}()
	pc := pub.GetPublishContext()
	if _, err := node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, PublishContext: pc, StagingTargetPath: staging,
		VolumeCapability: vc, VolumeContext: volCtx}); err != nil {
		t.Fatalf("NodeStageVolume %s: %v", id, err)
	}
	defer func() {
		if _, err := node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging}); err != nil {
			t.Errorf("NodeUnstageVolume %s: %v", id, err)
		}
	}()
	if _, err := node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: id, PublishContext: pc, StagingTargetPath: staging,
		TargetPath: target, VolumeCapability: vc, VolumeContext: volCtx}); err != nil {
		t.Fatalf("NodePublishVolume %s: %v", id, err)
	}
	defer func() {
		if _, err := node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target}); err != nil {
			t.Errorf("NodeUnpublishVolume %s: %v", id, err)
		}
	}()
	f, err := os.OpenFile(target, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fn(f)
}
