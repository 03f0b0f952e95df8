package plugin

import (
	"context"
	"errors"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"
	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/plugin/pool"
	"github.com/csi-hub/csi-hub/plugin/store"
)

// CreateSnapshot implements csi.ControllerServer. A snapshot is an independent
// copy of the volume's file (a reflink where the filesystem has them), written
// with the same creating -> ready protocol as volumes.
func (c *ControllerServer) CreateSnapshot(_ context.Context, req *csi.CreateSnapshotRequest) (*csi.CreateSnapshotResponse, error) {
	name, srcID := req.GetName(), req.GetSourceVolumeId()
	if name == "" {
		return nil, errorf(codes.InvalidArgument, "name is required")
	}
	if srcID == "" {
		return nil, errorf(codes.InvalidArgument, "source_volume_id is required")
	}
	if err := snapshotParams(req.GetParameters()); err != nil {
		return nil, err
	}
	release, ok := c.inFlight.Acquire("snapshot-name/" + name)
	if !ok {
		return nil, abortedBusy("snapshot " + name)
	}
	defer release()
	releaseSrc, ok := c.inFlight.Acquire(srcID)
	if !ok {
		return nil, abortedBusy(srcID)
	}
	defer releaseSrc()

	existing, err := c.store.SnapshotByName(name)
	switch {
	case err == nil && existing.SourceVolumeID != srcID:
		return nil, errorf(codes.AlreadyExists, "name %q: snapshot %s exists of source_volume_id %s, not %s", name, existing.ID, existing.SourceVolumeID, srcID)
	case err == nil && existing.State == store.StateReady:
		return &csi.CreateSnapshotResponse{Snapshot: csiSnapshot(existing)}, nil
	case err == nil && existing.State == store.StateDeleting:
		return nil, errorf(codes.Aborted, "snapshot %q (%s) is being deleted", name, existing.ID)
	case err == nil:
		return c.fillSnapshot(existing) // resume a create that could not clean up
	case !errors.Is(err, store.ErrNotFound):
		return nil, internalOr(err, "read snapshot record")
	}

	src, err := c.store.Volume(srcID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errorf(codes.NotFound, "source_volume_id %q not found", srcID)
	} else if err != nil {
		return nil, internalOr(err, "read volume record")
	}
	if src.State != store.StateReady {
		return nil, errorf(codes.FailedPrecondition, "source_volume_id %s is %s", srcID, src.State)
	}
	if _, err := c.pool.Size(srcID); err != nil {
		return nil, errorf(codes.FailedPrecondition, "source_volume_id %s: data unavailable: %v", srcID, err)
	}
	id, err := newID(pool.SnapshotPrefix)
	if err != nil {
		return nil, internalOr(err, "snapshot ID")
	}
	rec := &store.Snapshot{ID: id, Name: name, SourceVolumeID: srcID, SizeBytes: src.SizeBytes,
		State: store.StateCreating, CreatedAt: time.Now().UTC()}
	if err := c.store.InsertSnapshot(rec, c.capacity); err != nil {
		if errors.Is(err, store.ErrCapacity) {
			return nil, errorf(codes.ResourceExhausted, "source_volume_id %s: pool is full: %v", srcID, err)
		}
		return nil, internalOr(err, "write snapshot record")
	}
	return c.fillSnapshot(rec)
}

func (c *ControllerServer) fillSnapshot(rec *store.Snapshot) (*csi.CreateSnapshotResponse, error) {
	err := c.pool.CreateFrom(rec.ID, rec.SourceVolumeID, rec.SizeBytes, false)
	if err == nil {
		rec.State = store.StateReady
		err = c.store.UpdateSnapshot(rec)
	}
	if err != nil {
		if rmErr := c.pool.Remove(rec.ID); rmErr == nil {
			if dbErr := c.store.DeleteSnapshot(rec.ID); dbErr != nil {
				klog.ErrorS(dbErr, "Rollback: removing snapshot record failed; start-up reconcile will retry", "snapshot", rec.ID)
			}
		}
		if errors.Is(err, pool.ErrNoSpace) {
			return nil, errorf(codes.ResourceExhausted, "source_volume_id %s: pool filesystem is full: %v", rec.SourceVolumeID, err)
		}
		return nil, internalOr(err, "copy volume "+rec.SourceVolumeID+" into snapshot "+rec.ID)
	}
	klog.InfoS("Snapshot created", "snapshot", rec.ID, "name", rec.Name, "volume", rec.SourceVolumeID, "size", rec.SizeBytes)
	return &csi.CreateSnapshotResponse{Snapshot: csiSnapshot(rec)}, nil
}

func csiSnapshot(s *store.Snapshot) *csi.Snapshot {
	return &csi.Snapshot{SnapshotId: s.ID, SourceVolumeId: s.SourceVolumeID, SizeBytes: s.SizeBytes,
		CreationTime: timestamppb.New(s.CreatedAt), ReadyToUse: s.State == store.StateReady, GroupSnapshotId: s.GroupID}
}

// DeleteSnapshot implements csi.ControllerServer.
func (c *ControllerServer) DeleteSnapshot(_ context.Context, req *csi.DeleteSnapshotRequest) (*csi.DeleteSnapshotResponse, error) {
	id := req.GetSnapshotId()
	if id == "" {
		return nil, errorf(codes.InvalidArgument, "snapshot_id is required")
	}
	release, ok := c.inFlight.Acquire(id)
	if !ok {
		return nil, abortedBusy(id)
	}
	defer release()
	rec, err := c.store.Snapshot(id)
	if errors.Is(err, store.ErrNotFound) {
		return &csi.DeleteSnapshotResponse{}, nil
	} else if err != nil {
		return nil, internalOr(err, "read snapshot record")
	}
	if rec.GroupID != "" {
		// The group's members go together, or the group would be half gone.
		return nil, memberError(rec, "delete")
	}
	rec.State = store.StateDeleting
	if err := c.store.UpdateSnapshot(rec); err != nil {
		return nil, internalOr(err, "mark snapshot deleting")
	}
	if err := c.pool.Remove(id); err != nil {
		return nil, internalOr(err, "remove snapshot file")
	}
	if err := c.store.DeleteSnapshot(id); err != nil {
		return nil, internalOr(err, "remove snapshot record")
	}
	klog.InfoS("Snapshot deleted", "snapshot", id, "name", rec.Name)
	return &csi.DeleteSnapshotResponse{}, nil
}

// ListSnapshots implements csi.ControllerServer.
func (c *ControllerServer) ListSnapshots(_ context.Context, req *csi.ListSnapshotsRequest) (*csi.ListSnapshotsResponse, error) {
	from, err := pageStart(req.GetStartingToken(), pool.SnapshotPrefix, req.GetMaxEntries())
	if err != nil {
		return nil, err
	}
	snapID, srcID := req.GetSnapshotId(), req.GetSourceVolumeId()
	keep := func(s *store.Snapshot) bool {
		return (snapID == "" || s.ID == snapID) && (srcID == "" || s.SourceVolumeID == srcID)
	}
	recs, next, err := c.store.Snapshots(from, int(req.GetMaxEntries()), keep)
	if err != nil {
		return nil, internalOr(err, "list snapshot records")
	}
	resp := &csi.ListSnapshotsResponse{NextToken: next}
	for _, s := range recs {
		resp.Entries = append(resp.Entries, &csi.ListSnapshotsResponse_Entry{Snapshot: csiSnapshot(s)})
	}
	return resp, nil
}

// GetSnapshot implements csi.ControllerServer.
func (c *ControllerServer) GetSnapshot(_ context.Context, req *csi.GetSnapshotRequest) (*csi.GetSnapshotResponse, error) {
	id := req.GetSnapshotId()
	if id == "" {
		return nil, errorf(codes.InvalidArgument, "snapshot_id is required")
	}
	rec, err := c.store.Snapshot(id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errorf(codes.NotFound, "snapshot_id %q not found", id)
	} else if err != nil {
		return nil, internalOr(err, "read snapshot record")
	}
	return &csi.GetSnapshotResponse{Snapshot: csiSnapshot(rec)}, nil
}
