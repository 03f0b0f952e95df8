package plugin_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"

	"github.com/csi-hub/csi-hub/internal/testutil"
	"github.com/csi-hub/csi-hub/plugin/plugintest"
)

func TestSnapshotRestoreAndClone(t *testing.T) {
	d := plugintest.Start(t, plugintest.Options{})
	cc := d.ControllerClient()
	ctx := context.Background()
	src := mustCreate(t, cc, createReq("src", 8*mib, nil))
	srcPath := filepath.Join(d.PoolDir, src.GetVolumeId()+".img")
	before := bytes.Repeat([]byte("before!!"), 512)
	testutil.WriteAt(t, srcPath, 3*mib, before)

	snapReq := &csi.CreateSnapshotRequest{Name: "snap-a", SourceVolumeId: src.GetVolumeId(),
		Parameters: map[string]string{"csi.storage.k8s.io/volumesnapshot/name": "a"}}
	snap, err := cc.CreateSnapshot(ctx, snapReq)
	if err != nil {
		t.Fatal(err)
	}
	s := snap.GetSnapshot()
	if !s.GetReadyToUse() || s.GetSizeBytes() != 8*mib || s.GetSourceVolumeId() != src.GetVolumeId() || s.GetCreationTime() == nil {
		t.Fatalf("snapshot %v", s)
	}
	again, err := cc.CreateSnapshot(ctx, snapReq)
	if err != nil || again.GetSnapshot().GetSnapshotId() != s.GetSnapshotId() {
		t.Fatalf("repeated snapshot: %v %v", again, err)
	}
	other := mustCreate(t, cc, createReq("other", 8*mib, nil))
	_, err = cc.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snap-a", SourceVolumeId: other.GetVolumeId()})
	wantCode(t, err, codes.AlreadyExists, "source_volume_id")

	// Writes after the snapshot must not show in it.
	testutil.WriteAt(t, srcPath, 3*mib, bytes.Repeat([]byte("after!!!"), 512))

	restoreReq := createReq("restored", 16*mib, nil)
	restoreReq.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
		Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: s.GetSnapshotId()}}}
	restored := mustCreate(t, cc, restoreReq)
	rPath := filepath.Join(d.PoolDir, restored.GetVolumeId()+".img")
	if restored.GetCapacityBytes() != 16*mib || restored.GetContentSource().GetSnapshot().GetSnapshotId() != s.GetSnapshotId() {
		t.Fatalf("restored volume %v", restored)
	}
	if got := testutil.ReadAt(t, rPath, 3*mib, len(before)); !bytes.Equal(got, before) {
		t.Fatal("restored volume does not hold the snapshot's data")
	}
	if fi, _ := os.Stat(rPath); fi.Size() != 16*mib {
		t.Fatalf("restored file is %d bytes", fi.Size())
	}

	cloneReq := createReq("clone", 0, map[string]string{"type": "thick"})
	cloneReq.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{
		Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: src.GetVolumeId()}}}
	cloneReq.CapacityRange = nil
	clone := mustCreate(t, cc, cloneReq)
	if clone.GetCapacityBytes() < 8*mib {
		t.Fatalf("clone smaller than source: %d", clone.GetCapacityBytes())
	}
	if got := testutil.ReadAt(t, filepath.Join(d.PoolDir, clone.GetVolumeId()+".img"), 3*mib, 8); string(got) != "after!!!" {
		t.Fatalf("clone holds %q", got)
	}

	// Snapshots are independent copies: the source can go, the snapshot stays usable.
	if _, err := cc.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: src.GetVolumeId()}); err != nil {
		t.Fatal(err)
	}
	restoreReq.Name = "restored-after-delete"
	mustCreate(t, cc, restoreReq)

	list, err := cc.ListSnapshots(ctx, &csi.ListSnapshotsRequest{SourceVolumeId: src.GetVolumeId()})
	if err != nil || len(list.GetEntries()) != 1 {
		t.Fatalf("list by source: %v %v", list, err)
	}
	list, _ = cc.ListSnapshots(ctx, &csi.ListSnapshotsRequest{SnapshotId: "snap-00000000deadbeef"})
	if len(list.GetEntries()) != 0 {
		t.Fatalf("unknown snapshot listed: %v", list)
	}
	got, err := cc.GetSnapshot(ctx, &csi.GetSnapshotRequest{SnapshotId: s.GetSnapshotId()})
	if err != nil || got.GetSnapshot().GetSourceVolumeId() != src.GetVolumeId() {
		t.Fatalf("get snapshot: %v %v", got, err)
	}
	for range 2 {
		if _, err := cc.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: s.GetSnapshotId()}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(d.PoolDir, s.GetSnapshotId()+".img")); !os.IsNotExist(err) {
		t.Fatalf("snapshot file left: %v", err)
	}
}

func TestListPagination(t *testing.T) {
	d := plugintest.Start(t, plugintest.Options{})
	cc := d.ControllerClient()
	ctx := context.Background()
	want := map[string]bool{}
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		v := mustCreate(t, cc, createReq(n, mib, nil))
		want[v.GetVolumeId()] = true
		if _, err := cc.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: n, SourceVolumeId: v.GetVolumeId()}); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	token, pages := "", 0
	for {
		resp, err := cc.ListVolumes(ctx, &csi.ListVolumesRequest{MaxEntries: 2, StartingToken: token})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(resp.GetEntries()) > 2 {
			t.Fatalf("page of %d entries", len(resp.GetEntries()))
		}
		for _, e := range resp.GetEntries() {
			if seen[e.GetVolume().GetVolumeId()] {
				t.Fatalf("%s listed twice", e.GetVolume().GetVolumeId())
			}
			seen[e.GetVolume().GetVolumeId()] = true
			if h := e.GetStatus(); h == nil {
				t.Fatal("no volume status")
			}
		}
		if token = resp.GetNextToken(); token == "" {
			break
		}
	}
	if pages != 3 || len(seen) != len(want) {
		t.Fatalf("%d pages, %d volumes", pages, len(seen))
	}
	snaps := 0
	token = ""
	for {
		resp, err := cc.ListSnapshots(ctx, &csi.ListSnapshotsRequest{MaxEntries: 3, StartingToken: token})
		if err != nil {
			t.Fatal(err)
		}
		snaps += len(resp.GetEntries())
		if token = resp.GetNextToken(); token == "" {
			break
		}
	}
	if snaps != 5 {
		t.Fatalf("%d snapshots listed", snaps)
	}
}
