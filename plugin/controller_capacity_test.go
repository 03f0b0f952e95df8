package plugin_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"

	"github.com/csi-hub/csi-hub/plugin/plugintest"
)

func available(t *testing.T, cc csi.ControllerClient, req *csi.GetCapacityRequest) int64 {
	t.Helper()
	resp, err := cc.GetCapacity(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetAvailableCapacity()
}

func TestPoolCapacityLimit(t *testing.T) {
	d := plugintest.Start(t, plugintest.Options{Capacity: 20 * mib})
	cc := d.ControllerClient()
	ctx := context.Background()
	if got := available(t, cc, &csi.GetCapacityRequest{}); got != 20*mib {
		t.Fatalf("empty pool: %d available", got)
	}
	v := mustCreate(t, cc, createReq("a", 12*mib, nil))
	if got := available(t, cc, &csi.GetCapacityRequest{}); got != 8*mib {
		t.Fatalf("after 12 MiB: %d available", got)
	}
	own := &csi.Topology{Segments: map[string]string{"topology.block.csi-hub.io/node": d.NodeID}}
	if got := available(t, cc, &csi.GetCapacityRequest{AccessibleTopology: own}); got != 8*mib {
		t.Fatalf("own segment: %d", got)
	}
	foreign := &csi.Topology{Segments: map[string]string{"topology.block.csi-hub.io/node": "elsewhere"}}
	if got := available(t, cc, &csi.GetCapacityRequest{AccessibleTopology: foreign}); got != 0 {
		t.Fatalf("foreign segment: %d", got)
	}

	_, err := cc.CreateVolume(ctx, createReq("b", 9*mib, nil))
	wantCode(t, err, codes.ResourceExhausted, "pool is full")
	_, err = cc.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "s", SourceVolumeId: v.GetVolumeId()})
	wantCode(t, err, codes.ResourceExhausted, "pool is full")
	_, err = cc.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{VolumeId: v.GetVolumeId(), CapacityRange: &csi.CapacityRange{RequiredBytes: 21 * mib}})
	wantCode(t, err, codes.ResourceExhausted, "pool is full")
	mustCreate(t, cc, createReq("c", 8*mib, nil))
	if got := available(t, cc, &csi.GetCapacityRequest{}); got != 0 {
		t.Fatalf("full pool: %d available", got)
	}
	// Deleting frees the space again.
	if _, err := cc.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: v.GetVolumeId()}); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, cc, createReq("b", 9*mib, nil))
	list, _ := cc.ListVolumes(ctx, &csi.ListVolumesRequest{})
	if len(list.GetEntries()) != 2 {
		t.Fatalf("%d volumes, want 2", len(list.GetEntries()))
	}
}

// TestThickVolumeOnFullFilesystem puts the pool on a small tmpfs with a
// capacity limit above its size, so only the real fallocate can notice.
func TestThickVolumeOnFullFilesystem(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED LOUDLY: mounting a small tmpfs for the pool needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	d := plugintest.Start(t, plugintest.Options{PoolDir: dir, Capacity: 1 << 30})
	cc := d.ControllerClient()
	ctx := context.Background()

	_, err := cc.CreateVolume(ctx, createReq("too-thick", 32*mib, map[string]string{"type": "thick"}))
	wantCode(t, err, codes.ResourceExhausted, "no room")
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".img") || strings.HasPrefix(e.Name(), ".tmp-") {
			t.Fatalf("failed create left %s", e.Name())
		}
	}
	list, _ := cc.ListVolumes(ctx, &csi.ListVolumesRequest{})
	if len(list.GetEntries()) != 0 {
		t.Fatalf("failed create left a record: %v", list)
	}
	// A thin volume of the same size still fits (sparse), and a retry of the
	// failed name with a smaller thick size works.
	mustCreate(t, cc, createReq("thin", 32*mib, nil))
	v := mustCreate(t, cc, createReq("too-thick", 4*mib, map[string]string{"type": "thick"}))
	if _, err := os.Stat(filepath.Join(dir, v.GetVolumeId()+".img")); err != nil {
		t.Fatal(err)
	}
	// Growing the thick volume past the filesystem fails and is rolled back.
	_, err = cc.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{VolumeId: v.GetVolumeId(),
		CapacityRange: &csi.CapacityRange{RequiredBytes: 64 * mib}})
	wantCode(t, err, codes.ResourceExhausted, "required_bytes")
	if fi, err := os.Stat(filepath.Join(dir, v.GetVolumeId()+".img")); err != nil || fi.Size() != 4*mib {
		t.Fatalf("file after failed expansion: %v %v", fi, err)
	}
	if got, _ := cc.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: v.GetVolumeId()}); got.GetVolume().GetCapacityBytes() != 4*mib {
		t.Fatalf("record after failed expansion: %v", got)
	}
	// Turning the thin volume thick cannot fit either.
	thin, _ := cc.ListVolumes(ctx, &csi.ListVolumesRequest{})
	for _, e := range thin.GetEntries() {
		if e.GetVolume().GetCapacityBytes() == 32*mib {
			_, err := cc.ControllerModifyVolume(ctx, &csi.ControllerModifyVolumeRequest{VolumeId: e.GetVolume().GetVolumeId(),
				MutableParameters: map[string]string{"type": "thick"}})
			wantCode(t, err, codes.ResourceExhausted, "mutable_parameters")
		}
	}
}
