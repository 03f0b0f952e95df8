package fakedriver

import (
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
)

func TestCreateSnapshotIdempotentByName(t *testing.T) {
	d, c := startDriver(t, Options{})
	v := mustCreate(t, c, createReq("src", 5*mib))
	other := mustCreate(t, c, createReq("other", mib))
	first := mustSnapshot(t, c, "snapshot-1", v.GetVolumeId())
	if !first.GetReadyToUse() || first.GetSizeBytes() != 5*mib || first.GetSourceVolumeId() != v.GetVolumeId() ||
		first.GetCreationTime() == nil {
		t.Fatalf("snapshot %v", first)
	}
	again := mustSnapshot(t, c, "snapshot-1", v.GetVolumeId())
	if again.GetSnapshotId() != first.GetSnapshotId() || !again.GetCreationTime().AsTime().Equal(first.GetCreationTime().AsTime()) {
		t.Fatalf("repeat gave %v, want %v", again, first)
	}
	_, err := c.ctrl.CreateSnapshot(ctx(t), &csi.CreateSnapshotRequest{Name: "snapshot-1", SourceVolumeId: other.GetVolumeId()})
	wantCode(t, err, codes.AlreadyExists, "snapshot-1")
	_, err = c.ctrl.CreateSnapshot(ctx(t), &csi.CreateSnapshotRequest{Name: "snapshot-2", SourceVolumeId: "vol-nope"})
	wantCode(t, err, codes.NotFound, "vol-nope")
	_, err = c.ctrl.CreateSnapshot(ctx(t), &csi.CreateSnapshotRequest{SourceVolumeId: v.GetVolumeId()})
	wantCode(t, err, codes.InvalidArgument, "name")
	_, err = c.ctrl.CreateSnapshot(ctx(t), &csi.CreateSnapshotRequest{Name: "snapshot-3"})
	wantCode(t, err, codes.InvalidArgument, "source_volume_id")
	if n := len(d.Snapshots()); n != 1 {
		t.Fatalf("backend has %d snapshots, want 1", n)
	}
}

func TestListAndDeleteSnapshots(t *testing.T) {
	d, c := startDriver(t, Options{})
	a := mustCreate(t, c, createReq("a", mib))
	b := mustCreate(t, c, createReq("b", mib))
	sa1 := mustSnapshot(t, c, "a1", a.GetVolumeId())
	mustSnapshot(t, c, "a2", a.GetVolumeId())
	sb := mustSnapshot(t, c, "b1", b.GetVolumeId())

	list := func(req *csi.ListSnapshotsRequest) []*csi.ListSnapshotsResponse_Entry {
		t.Helper()
		resp, err := c.ctrl.ListSnapshots(ctx(t), req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetEntries()
	}
	if n := len(list(&csi.ListSnapshotsRequest{})); n != 3 {
		t.Fatalf("listed %d snapshots, want 3", n)
	}
	if e := list(&csi.ListSnapshotsRequest{SnapshotId: sb.GetSnapshotId()}); len(e) != 1 || e[0].GetSnapshot().GetSnapshotId() != sb.GetSnapshotId() {
		t.Fatalf("by snapshot_id: %v", e)
	}
	bySource := list(&csi.ListSnapshotsRequest{SourceVolumeId: a.GetVolumeId()})
	if len(bySource) != 2 {
		t.Fatalf("by source_volume_id: %d entries, want 2", len(bySource))
	}
	for _, e := range bySource {
		if e.GetSnapshot().GetSourceVolumeId() != a.GetVolumeId() {
			t.Fatalf("by source_volume_id returned %v", e)
		}
	}
	if e := list(&csi.ListSnapshotsRequest{SnapshotId: "snap-nope"}); len(e) != 0 {
		t.Fatalf("unknown snapshot_id listed %v", e)
	}
	resp, err := c.ctrl.ListSnapshots(ctx(t), &csi.ListSnapshotsRequest{MaxEntries: 2})
	if err != nil || len(resp.GetEntries()) != 2 || resp.GetNextToken() == "" {
		t.Fatalf("first page: %v, %v", resp, err)
	}
	if rest := list(&csi.ListSnapshotsRequest{StartingToken: resp.GetNextToken()}); len(rest) != 1 {
		t.Fatalf("second page has %d entries, want 1", len(rest))
	}

	if _, err := c.ctrl.DeleteSnapshot(ctx(t), &csi.DeleteSnapshotRequest{SnapshotId: sa1.GetSnapshotId()}); err != nil {
		t.Fatal(err)
	}
	for _, s := range d.Snapshots() {
		if s.ID == sa1.GetSnapshotId() {
			t.Fatal("DeleteSnapshot returned OK but the snapshot remains")
		}
	}
	if _, err := c.ctrl.DeleteSnapshot(ctx(t), &csi.DeleteSnapshotRequest{SnapshotId: sa1.GetSnapshotId()}); err != nil {
		t.Fatalf("deleting an unknown snapshot must succeed: %v", err)
	}
	_, err = c.ctrl.DeleteSnapshot(ctx(t), &csi.DeleteSnapshotRequest{})
	wantCode(t, err, codes.InvalidArgument, "snapshot_id")
}

func TestSnapshotReadyAfterPolls(t *testing.T) {
	d, c := startDriver(t, Options{SnapshotReadyAfterPolls: 3})
	v := mustCreate(t, c, createReq("src", mib))
	snap := mustSnapshot(t, c, "slow-snap", v.GetVolumeId())
	if snap.GetReadyToUse() {
		t.Fatal("snapshot ready at creation despite SnapshotReadyAfterPolls")
	}
	// Restoring from an unready snapshot is refused, retryably.
	restore := createReq("restore", mib)
	restore.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
		Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: snap.GetSnapshotId()}}}
	_, err := c.ctrl.CreateVolume(ctx(t), restore)
	wantCode(t, err, codes.Unavailable, "not ready")

	poll := func() bool {
		resp, err := c.ctrl.ListSnapshots(ctx(t), &csi.ListSnapshotsRequest{SnapshotId: snap.GetSnapshotId()})
		if err != nil || len(resp.GetEntries()) != 1 {
			t.Fatalf("ListSnapshots: %v, %v", resp, err)
		}
		return resp.GetEntries()[0].GetSnapshot().GetReadyToUse()
	}
	if poll() {
		t.Fatal("ready after 1 poll, want 3")
	}
	// A repeated CreateSnapshot is a poll too (csi-snapshotter polls that way).
	if mustSnapshot(t, c, "slow-snap", v.GetVolumeId()).GetReadyToUse() {
		t.Fatal("ready after 2 polls, want 3")
	}
	if !poll() {
		t.Fatal("not ready after 3 polls")
	}
	if d.Snapshots()[0].Polls != 3 {
		t.Fatalf("Polls = %d, want 3", d.Snapshots()[0].Polls)
	}
	mustCreate(t, c, restore)
}

func TestSnapshotReadyAfterDuration(t *testing.T) {
	d, c := startDriver(t, Options{SnapshotReadyAfter: 150 * time.Millisecond})
	v := mustCreate(t, c, createReq("src", mib))
	snap := mustSnapshot(t, c, "timed", v.GetVolumeId())
	if snap.GetReadyToUse() {
		t.Fatal("ready before SnapshotReadyAfter elapsed")
	}
	time.Sleep(200 * time.Millisecond)
	resp, err := c.ctrl.ListSnapshots(ctx(t), &csi.ListSnapshotsRequest{SnapshotId: snap.GetSnapshotId()})
	if err != nil || !resp.GetEntries()[0].GetSnapshot().GetReadyToUse() {
		t.Fatalf("not ready after SnapshotReadyAfter: %v, %v", resp, err)
	}

	// Tests can pin readiness by hand.
	pinned, err := d.AddSnapshot(Snapshot{Name: "pre-provisioned", SourceVolumeID: v.GetVolumeId(), SizeBytes: mib})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	resp, err = c.ctrl.ListSnapshots(ctx(t), &csi.ListSnapshotsRequest{SnapshotId: pinned})
	if err != nil || resp.GetEntries()[0].GetSnapshot().GetReadyToUse() {
		t.Fatalf("pinned unready snapshot turned ready: %v, %v", resp, err)
	}
	if err := d.SetSnapshotReady(pinned, true); err != nil {
		t.Fatal(err)
	}
	resp, _ = c.ctrl.ListSnapshots(ctx(t), &csi.ListSnapshotsRequest{SnapshotId: pinned})
	if !resp.GetEntries()[0].GetSnapshot().GetReadyToUse() {
		t.Fatal("SetSnapshotReady(true) not reflected")
	}
}
