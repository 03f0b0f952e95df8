package plugin

import (
	"context"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/csi-hub/csi-hub/plugin/transport/loop"
)

// TestConcurrentOperationsAborted holds a volume's in-flight slot, as a slow
// running operation would, and checks every other operation on it is Aborted.
func TestConcurrentOperationsAborted(t *testing.T) {
	target, err := loop.NewTarget(loop.TargetConfig{NodeID: "n1", TopologyKey: TopologyNodeKey("block.csi-hub.io")})
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewControllerServer(context.Background(), ControllerConfig{DriverName: "block.csi-hub.io", NodeID: "n1",
		PoolDir: t.TempDir(), Target: target})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	block := &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}}
	vol, err := c.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "v", VolumeCapabilities: []*csi.VolumeCapability{block}})
	if err != nil {
		t.Fatal(err)
	}
	id := vol.GetVolume().GetVolumeId()
	release, ok := c.inFlight.Acquire(id)
	if !ok {
		t.Fatal("slot taken")
	}
	calls := map[string]func() error{
		"DeleteVolume": func() error { _, err := c.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id}); return err },
		"Publish": func() error {
			_, err := c.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: "n1", VolumeCapability: block})
			return err
		},
		"Unpublish": func() error {
			_, err := c.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: id})
			return err
		},
		"Expand": func() error {
			_, err := c.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{VolumeId: id, CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 31}})
			return err
		},
		"Modify": func() error {
			_, err := c.ControllerModifyVolume(ctx, &csi.ControllerModifyVolumeRequest{VolumeId: id, MutableParameters: map[string]string{"tier": "x"}})
			return err
		},
		"Snapshot": func() error {
			_, err := c.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "s", SourceVolumeId: id})
			return err
		},
		"Clone": func() error {
			_, err := c.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "clone", VolumeCapabilities: []*csi.VolumeCapability{block},
				VolumeContentSource: &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: id}}}})
			return err
		},
	}
	for name, call := range calls {
		if code := status.Code(call()); code != codes.Aborted {
			t.Errorf("%s while busy: %v, want Aborted", name, code)
		}
	}
	// Same for a create by name that is already running.
	releaseName, _ := c.inFlight.Acquire("volume-name/v")
	if _, err := c.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "v", VolumeCapabilities: []*csi.VolumeCapability{block}}); status.Code(err) != codes.Aborted {
		t.Errorf("create of a name in flight: %v", err)
	}
	releaseName()
	release()
	if _, err := c.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id}); err != nil {
		t.Fatalf("delete once free: %v", err)
	}
}
