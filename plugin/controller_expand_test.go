package plugin_test

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"

	"github.com/csi-hub/csi-hub/plugin/plugintest"
)

func TestExpandVolume(t *testing.T) {
	d := plugintest.Start(t, plugintest.Options{})
	cc := d.ControllerClient()
	ctx := context.Background()
	v := mustCreate(t, cc, createReq("grow", 4*mib, map[string]string{"type": "thick"}))
	path := filepath.Join(d.PoolDir, v.GetVolumeId()+".img")

	resp, err := cc.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{VolumeId: v.GetVolumeId(),
		CapacityRange: &csi.CapacityRange{RequiredBytes: 10 * mib}, VolumeCapability: mountCap()})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetCapacityBytes() != 10*mib || !resp.GetNodeExpansionRequired() {
		t.Fatalf("expand response %v", resp)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Size() != 10*mib || fi.Sys().(*syscall.Stat_t).Blocks*512 < 10*mib {
		t.Fatalf("file after thick expand: %v %v", fi, err)
	}
	// Asking for less is a no-op that reports the current size.
	resp, err = cc.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{VolumeId: v.GetVolumeId(),
		CapacityRange: &csi.CapacityRange{RequiredBytes: 6 * mib}, VolumeCapability: blockCap()})
	if err != nil || resp.GetCapacityBytes() != 10*mib || !resp.GetNodeExpansionRequired() {
		t.Fatalf("smaller expand: %v %v", resp, err)
	}
	got, _ := cc.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: v.GetVolumeId()})
	if got.GetVolume().GetCapacityBytes() != 10*mib {
		t.Fatalf("record says %d", got.GetVolume().GetCapacityBytes())
	}
	// Restore of a snapshot into a larger volume after the expansion.
	snap, err := cc.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "s", SourceVolumeId: v.GetVolumeId()})
	if err != nil || snap.GetSnapshot().GetSizeBytes() != 10*mib {
		t.Fatalf("snapshot: %v %v", snap, err)
	}
	req := createReq("bigger", 0, nil)
	req.CapacityRange = nil
	req.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
		Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: snap.GetSnapshot().GetSnapshotId()}}}
	if r := mustCreate(t, cc, req); r.GetCapacityBytes() != plugintestDefaultSize {
		t.Fatalf("restore without size: %d bytes", r.GetCapacityBytes())
	}
}

const plugintestDefaultSize = 1 << 30

func TestModifyVolume(t *testing.T) {
	d := plugintest.Start(t, plugintest.Options{})
	cc := d.ControllerClient()
	ctx := context.Background()
	v := mustCreate(t, cc, createReq("mod", 8*mib, map[string]string{"tier": "bronze"}))
	path := filepath.Join(d.PoolDir, v.GetVolumeId()+".img")
	if fi, _ := os.Stat(path); fi.Sys().(*syscall.Stat_t).Blocks*512 > mib {
		t.Fatal("thin volume is not sparse")
	}
	if _, err := cc.ControllerModifyVolume(ctx, &csi.ControllerModifyVolumeRequest{VolumeId: v.GetVolumeId(),
		MutableParameters: map[string]string{"type": "thick", "tier": "gold"}}); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Sys().(*syscall.Stat_t).Blocks*512 < 8*mib {
		t.Fatal("thin -> thick did not preallocate")
	}
	got, _ := cc.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: v.GetVolumeId()})
	if vc := got.GetVolume().GetVolumeContext(); vc["type"] != "thick" || vc["tier"] != "gold" {
		t.Fatalf("volume context after modify: %v", vc)
	}
	// The name now maps to different parameters: a create repeating the old ones conflicts.
	_, err := cc.CreateVolume(ctx, createReq("mod", 8*mib, map[string]string{"tier": "bronze"}))
	wantCode(t, err, codes.AlreadyExists, "parameters")
}

func TestPublishSingleNode(t *testing.T) {
	d := plugintest.Start(t, plugintest.Options{})
	cc := d.ControllerClient()
	ctx := context.Background()
	v := mustCreate(t, cc, createReq("pub", 4*mib, nil))
	pub := func(node string, ro bool) error {
		_, err := cc.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: v.GetVolumeId(),
			NodeId: node, VolumeCapability: mountCap(), Readonly: ro})
		return err
	}
	if err := pub(d.NodeID, false); err != nil {
		t.Fatal(err)
	}
	if err := pub(d.NodeID, false); err != nil {
		t.Fatalf("repeated publish: %v", err)
	}
	wantCode(t, pub(d.NodeID, true), codes.AlreadyExists, "readonly")
	wantCode(t, pub("second-node", false), codes.FailedPrecondition, d.NodeID)

	blockOnly := mustCreate(t, cc, &csi.CreateVolumeRequest{Name: "block-only", VolumeCapabilities: []*csi.VolumeCapability{blockCap()},
		CapacityRange: &csi.CapacityRange{RequiredBytes: mib}})
	_, err := cc.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: blockOnly.GetVolumeId(),
		NodeId: d.NodeID, VolumeCapability: mountCap()})
	wantCode(t, err, codes.InvalidArgument, "volume_capability")
	val, err := cc.ValidateVolumeCapabilities(ctx, &csi.ValidateVolumeCapabilitiesRequest{VolumeId: blockOnly.GetVolumeId(),
		VolumeCapabilities: []*csi.VolumeCapability{mountCap()}})
	if err != nil || val.GetConfirmed() != nil || val.GetMessage() == "" {
		t.Fatalf("validate mount on block-only: %v %v", val, err)
	}
	val, err = cc.ValidateVolumeCapabilities(ctx, &csi.ValidateVolumeCapabilitiesRequest{VolumeId: blockOnly.GetVolumeId(),
		VolumeCapabilities: []*csi.VolumeCapability{blockCap()}})
	if err != nil || val.GetConfirmed() == nil {
		t.Fatalf("validate block: %v %v", val, err)
	}

	// Unpublish without node_id detaches everywhere; unknown volumes are fine.
	if _, err := cc.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: v.GetVolumeId()}); err != nil {
		t.Fatal(err)
	}
	if _, err := cc.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: "vol-00000000deadbeef", NodeId: "x"}); err != nil {
		t.Fatal(err)
	}
	got, _ := cc.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: v.GetVolumeId()})
	if n := got.GetStatus().GetPublishedNodeIds(); len(n) != 0 {
		t.Fatalf("still published to %v", n)
	}
	if err := pub("second-node", false); err == nil {
		t.Fatal("loop transport published to a node that cannot reach the pool")
	}
}

func TestVolumeHealthAndRestart(t *testing.T) {
	d := plugintest.Start(t, plugintest.Options{})
	cc := d.ControllerClient()
	ctx := context.Background()
	ok := mustCreate(t, cc, createReq("ok", mib, nil))
	lost := mustCreate(t, cc, createReq("lost", mib, nil))
	if err := os.Remove(filepath.Join(d.PoolDir, lost.GetVolumeId()+".img")); err != nil {
		t.Fatal(err)
	}
	orphan := filepath.Join(d.PoolDir, "vol-00000000000000aa.img")
	if err := os.WriteFile(orphan, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	d.Restart(t)
	if _, err := os.Stat(orphan); !os.IsNotExist(err) {
		t.Fatalf("orphan survived restart: %v", err)
	}
	h, err := cc.ControllerGetVolumeHealth(ctx, &csi.ControllerGetVolumeHealthRequest{VolumeId: lost.GetVolumeId()})
	if err != nil || len(h.GetVolumeHealth().GetHealthStatuses()) != 1 ||
		h.GetVolumeHealth().GetHealthStatuses()[0].GetStatus() != csi.VolumeHealthErrorType_DATA_LOSS {
		t.Fatalf("health of lost volume: %v %v", h, err)
	}
	all, err := cc.ControllerListVolumeHealth(ctx, &csi.ControllerListVolumeHealthRequest{})
	if err != nil || len(all.GetEntries()) != 2 {
		t.Fatalf("list health: %v %v", all, err)
	}
	for _, e := range all.GetEntries() {
		if e.GetVolumeId() == ok.GetVolumeId() && len(e.GetHealthStatuses()) != 0 {
			t.Fatalf("healthy volume reported %v", e)
		}
	}
	_, err = cc.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "of-lost", SourceVolumeId: lost.GetVolumeId()})
	wantCode(t, err, codes.FailedPrecondition, "source_volume_id")
	// The lost volume can still be deleted, so the CO can clean up.
	if _, err := cc.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: lost.GetVolumeId()}); err != nil {
		t.Fatal(err)
	}
}
