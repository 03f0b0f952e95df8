package plugin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/csi-hub/csi-hub/plugin/transport"
)

// recordingTarget is a transport.Target that remembers the calls it got and
// fails Export for the IDs in failExport.
type recordingTarget struct {
	mu         sync.Mutex
	calls      []string
	failExport map[string]bool
}

func (r *recordingTarget) note(call string, vol transport.Volume) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, fmt.Sprintf("%s %s %d", call, vol.ID, vol.SizeBytes))
}

func (r *recordingTarget) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.calls
	r.calls = nil
	return c
}

func (r *recordingTarget) Name() string { return "recording" }
func (r *recordingTarget) Export(_ context.Context, v transport.Volume) error {
	r.note("export", v)
	if r.failExport[v.ID] {
		return errors.New("export refused")
	}
	return nil
}
func (r *recordingTarget) Unexport(_ context.Context, v transport.Volume) error {
	r.note("unexport", v)
	return nil
}
func (r *recordingTarget) Publish(_ context.Context, v transport.Volume, node string) (map[string]string, error) {
	r.note("publish-"+node, v)
	return map[string]string{transport.KeyTransport: "recording", transport.KeyVolumeID: v.ID}, nil
}
func (r *recordingTarget) Unpublish(_ context.Context, v transport.Volume, node string) error {
	r.note("unpublish-"+node, v)
	return nil
}
func (r *recordingTarget) Resized(_ context.Context, v transport.Volume) error {
	r.note("resized", v)
	return nil
}
func (r *recordingTarget) AccessibleTopology() map[string]string {
	return map[string]string{"topology.block.csi-hub.io/zone": "z1"}
}

// TestTargetContract checks the controller drives any transport.Target as the
// interface promises: Export on create and for every volume at start-up,
// Resized after expand, Unexport on delete; and that one volume failing to
// export at start-up does not stop the driver.
func TestTargetContract(t *testing.T) {
	dir := t.TempDir()
	target := &recordingTarget{}
	start := func() *ControllerServer {
		c, err := NewControllerServer(context.Background(), ControllerConfig{DriverName: "block.csi-hub.io", NodeID: "n1", PoolDir: dir, Target: target})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := start()
	ctx := context.Background()
	capBlock := []*csi.VolumeCapability{{AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}}}
	var ids []string
	for _, name := range []string{"a", "b", "c", "d"} {
		resp, err := c.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: name, VolumeCapabilities: capBlock, CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 20}})
		if err != nil {
			t.Fatal(err)
		}
		if seg := resp.GetVolume().GetAccessibleTopology()[0].GetSegments(); seg["topology.block.csi-hub.io/zone"] != "z1" {
			t.Fatalf("volume topology %v does not come from the target", seg)
		}
		ids = append(ids, resp.GetVolume().GetVolumeId())
	}
	want := []string{"export " + ids[0] + " 1048576", "export " + ids[1] + " 1048576", "export " + ids[2] + " 1048576", "export " + ids[3] + " 1048576"}
	if got := target.take(); !slices.Equal(got, want) {
		t.Fatalf("calls on create: %v, want %v", got, want)
	}
	if _, err := c.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: ids[3], NodeId: "n1", VolumeCapability: capBlock[0]}); err != nil {
		t.Fatal(err)
	}
	if got := target.take(); !slices.Equal(got, []string{"publish-n1 " + ids[3] + " 1048576"}) {
		t.Fatalf("calls on publish: %v", got)
	}
	if _, err := c.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{VolumeId: ids[0], CapacityRange: &csi.CapacityRange{RequiredBytes: 2 << 20}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: ids[1]}); err != nil {
		t.Fatal(err)
	}
	want = []string{"resized " + ids[0] + " 2097152", "unexport " + ids[1] + " 1048576"}
	if got := target.take(); !slices.Equal(got, want) {
		t.Fatalf("calls on expand+delete: %v, want %v", got, want)
	}
	c.Close()

	// Restart: every volume is exported again and its grants renewed (nvmet's
	// configfs does not survive a reboot); one refusing does not stop start-up,
	// and a volume whose file is gone is not exported at all.
	target.failExport = map[string]bool{ids[0]: true}
	if err := os.Remove(c.pool.Path(ids[2])); err != nil {
		t.Fatal(err)
	}
	c = start()
	defer c.Close()
	got := target.take()
	want = []string{"export " + ids[0] + " 2097152", "export " + ids[3] + " 1048576", "publish-n1 " + ids[3] + " 1048576"}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("calls at start-up: %v, want %v", got, want)
	}
}
