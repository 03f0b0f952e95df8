package fakedriver

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// refreshReadiness turns a snapshot ready once the ready options are met.
// Ready is final, as in a real backend.
func (d *Driver) refreshReadiness(sn *Snapshot) {
	if sn.ReadyToUse || sn.ReadinessPinned {
		return
	}
	if sn.Polls >= d.opts.SnapshotReadyAfterPolls && time.Since(sn.CreatedAt) >= d.opts.SnapshotReadyAfter {
		sn.ReadyToUse = true
	}
}

// observeLocked is one poll of a snapshot's status by a caller.
func (d *Driver) observeLocked(sn *Snapshot) {
	sn.Polls++
	d.refreshReadiness(sn)
}

func csiSnapshot(sn *Snapshot) *csi.Snapshot {
	return &csi.Snapshot{
		SnapshotId:     sn.ID,
		SourceVolumeId: sn.SourceVolumeID,
		SizeBytes:      sn.SizeBytes,
		CreationTime:   timestamppb.New(sn.CreatedAt),
		ReadyToUse:     sn.ReadyToUse,
	}
}

func (s *controllerServer) CreateSnapshot(_ context.Context, req *csi.CreateSnapshotRequest) (*csi.CreateSnapshotResponse, error) {
	d := s.d
	if err := d.requireCap(csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT); err != nil {
		return nil, err
	}
	if req.GetName() == "" {
		return nil, invalid("name is required")
	}
	if req.GetSourceVolumeId() == "" {
		return nil, invalid("source_volume_id is required")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if sn := d.state.snapshotByName(req.GetName()); sn != nil {
		if sn.SourceVolumeID != req.GetSourceVolumeId() {
			return nil, status.Errorf(codes.AlreadyExists, "snapshot %q exists for source volume %s, not %s",
				sn.Name, sn.SourceVolumeID, req.GetSourceVolumeId())
		}
		d.observeLocked(sn)
		if err := d.saveStatus(); err != nil {
			return nil, err
		}
		return &csi.CreateSnapshotResponse{Snapshot: csiSnapshot(sn)}, nil
	}
	v, ok := d.state.Volumes[req.GetSourceVolumeId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "source_volume_id %q not found", req.GetSourceVolumeId())
	}
	sn := &Snapshot{
		ID:             newID("snap"),
		Name:           req.GetName(),
		SourceVolumeID: v.ID,
		SizeBytes:      v.CapacityBytes,
		Parameters:     maps.Clone(req.GetParameters()),
		CreatedAt:      time.Now(),
	}
	d.refreshReadiness(sn)
	d.state.Snapshots[sn.ID] = sn
	if err := d.saveStatus(); err != nil {
		return nil, err
	}
	return &csi.CreateSnapshotResponse{Snapshot: csiSnapshot(sn)}, nil
}

func (s *controllerServer) DeleteSnapshot(_ context.Context, req *csi.DeleteSnapshotRequest) (*csi.DeleteSnapshotResponse, error) {
	d := s.d
	if err := d.requireCap(csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT); err != nil {
		return nil, err
	}
	if req.GetSnapshotId() == "" {
		return nil, invalid("snapshot_id is required")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.state.Snapshots[req.GetSnapshotId()]; !ok {
		return &csi.DeleteSnapshotResponse{}, nil // already gone: success, per spec
	}
	delete(d.state.Snapshots, req.GetSnapshotId())
	if err := d.saveStatus(); err != nil {
		return nil, err
	}
	return &csi.DeleteSnapshotResponse{}, nil
}

func (s *controllerServer) ListSnapshots(_ context.Context, req *csi.ListSnapshotsRequest) (*csi.ListSnapshotsResponse, error) {
	d := s.d
	if err := d.requireCap(csi.ControllerServiceCapability_RPC_LIST_SNAPSHOTS); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var matching []*Snapshot
	for _, id := range slices.Sorted(maps.Keys(d.state.Snapshots)) {
		sn := d.state.Snapshots[id]
		if req.GetSnapshotId() != "" && sn.ID != req.GetSnapshotId() {
			continue
		}
		if req.GetSourceVolumeId() != "" && sn.SourceVolumeID != req.GetSourceVolumeId() {
			continue
		}
		matching = append(matching, sn)
	}
	// An unknown snapshot_id or source_volume_id is an empty list, not an error (spec).
	pageOf, next, err := page(matching, req.GetStartingToken(), req.GetMaxEntries())
	if err != nil {
		return nil, err
	}
	resp := &csi.ListSnapshotsResponse{NextToken: next}
	for _, sn := range pageOf {
		d.observeLocked(sn)
		resp.Entries = append(resp.Entries, &csi.ListSnapshotsResponse_Entry{Snapshot: csiSnapshot(sn)})
	}
	if len(pageOf) > 0 {
		if err := d.saveStatus(); err != nil {
			return nil, err
		}
	}
	return resp, nil
}

func (s *controllerServer) GetSnapshot(_ context.Context, req *csi.GetSnapshotRequest) (*csi.GetSnapshotResponse, error) {
	d := s.d
	if err := d.requireCap(csi.ControllerServiceCapability_RPC_GET_SNAPSHOT); err != nil {
		return nil, err
	}
	if req.GetSnapshotId() == "" {
		return nil, invalid("snapshot_id is required")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	sn, ok := d.state.Snapshots[req.GetSnapshotId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "snapshot_id %q not found", req.GetSnapshotId())
	}
	d.observeLocked(sn)
	if err := d.saveStatus(); err != nil {
		return nil, err
	}
	return &csi.GetSnapshotResponse{Snapshot: csiSnapshot(sn)}, nil
}
