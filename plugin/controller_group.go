package plugin

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"
	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/plugin/pool"
	"github.com/csi-hub/csi-hub/plugin/store"
)

// groupPrefix names group snapshot IDs; a group has no file of its own.
const groupPrefix = "vgs-"

// GroupControllerGetCapabilities implements csi.GroupControllerServer.
func (c *ControllerServer) GroupControllerGetCapabilities(context.Context, *csi.GroupControllerGetCapabilitiesRequest) (*csi.GroupControllerGetCapabilitiesResponse, error) {
	return &csi.GroupControllerGetCapabilitiesResponse{Capabilities: []*csi.GroupControllerServiceCapability{{
		Type: &csi.GroupControllerServiceCapability_Rpc{Rpc: &csi.GroupControllerServiceCapability_RPC{
			Type: csi.GroupControllerServiceCapability_RPC_CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT}},
	}}}, nil
}

// CreateVolumeGroupSnapshot implements csi.GroupControllerServer: one
// snapshot per source volume, all showing the volumes at one point in time
// (see pool.CreateGroup), recorded as one group. All or nothing: a failure
// leaves no member behind.
func (c *ControllerServer) CreateVolumeGroupSnapshot(_ context.Context, req *csi.CreateVolumeGroupSnapshotRequest) (*csi.CreateVolumeGroupSnapshotResponse, error) {
	name, srcIDs := req.GetName(), req.GetSourceVolumeIds()
	if name == "" {
		return nil, errorf(codes.InvalidArgument, "name is required")
	}
	if len(srcIDs) == 0 {
		return nil, errorf(codes.InvalidArgument, "source_volume_ids is required")
	}
	for i, id := range srcIDs {
		if id == "" {
			return nil, errorf(codes.InvalidArgument, "source_volume_ids[%d] is empty", i)
		}
		if slices.Index(srcIDs, id) != i {
			return nil, errorf(codes.InvalidArgument, "source_volume_ids: volume %s is listed twice", id)
		}
	}
	if err := snapshotParams(req.GetParameters()); err != nil {
		return nil, err
	}
	release, err := c.acquireAll(append([]string{"group-name/" + name}, srcIDs...))
	if err != nil {
		return nil, err
	}
	defer release()

	group, members, err := c.store.GroupByName(name)
	switch {
	case err == nil && !sameVolumes(members, srcIDs):
		return nil, errorf(codes.AlreadyExists, "name %q: group snapshot %s exists of source volumes %v, not %v", name, group.ID, sourcesOf(members), srcIDs)
	case err == nil && group.State == store.StateReady:
		return &csi.CreateVolumeGroupSnapshotResponse{GroupSnapshot: csiGroup(group, members)}, nil
	case err == nil && group.State == store.StateDeleting:
		return nil, errorf(codes.Aborted, "group snapshot %q (%s) is being deleted", name, group.ID)
	case err == nil:
		// A create whose rollback failed: start it over.
		if err := c.dropGroup(group); err != nil {
			return nil, err
		}
	case !errors.Is(err, store.ErrNotFound):
		return nil, internalOr(err, "read group snapshot record")
	}

	group, members, err = c.newGroup(name, srcIDs)
	if err != nil {
		return nil, err
	}
	copies := make([]pool.GroupCopy, len(members))
	for i, m := range members {
		copies[i] = pool.GroupCopy{ID: m.ID, SrcID: m.SourceVolumeID}
	}
	if err := c.pool.CreateGroup(copies, c.cfg.GroupCopy); err != nil {
		if dropErr := c.dropGroup(group); dropErr != nil {
			klog.ErrorS(dropErr, "Rollback of group snapshot failed; start-up reconcile will finish it", "groupSnapshot", group.ID)
		}
		switch {
		case errors.Is(err, pool.ErrGroupBusy):
			return nil, errorf(codes.Unavailable, "group snapshot %q: %v; try again", name, err)
		case errors.Is(err, pool.ErrNoSpace):
			return nil, errorf(codes.ResourceExhausted, "group snapshot %q: pool filesystem is full: %v", name, err)
		}
		return nil, internalOr(err, "copy volumes into group snapshot "+group.ID)
	}
	if err := c.store.SetGroupState(group.ID, store.StateReady); err != nil {
		return nil, internalOr(err, "mark group snapshot ready")
	}
	group, members, err = c.store.Group(group.ID)
	if err != nil {
		return nil, internalOr(err, "read group snapshot record")
	}
	klog.InfoS("Group snapshot created", "groupSnapshot", group.ID, "name", name, "volumes", srcIDs, "snapshots", group.SnapshotIDs)
	return &csi.CreateVolumeGroupSnapshotResponse{GroupSnapshot: csiGroup(group, members)}, nil
}

// newGroup checks the sources and records the group and its members as creating.
func (c *ControllerServer) newGroup(name string, srcIDs []string) (*store.Group, []*store.Snapshot, error) {
	now := time.Now().UTC()
	gid, err := newID(groupPrefix)
	if err != nil {
		return nil, nil, internalOr(err, "group snapshot ID")
	}
	group := &store.Group{ID: gid, Name: name, State: store.StateCreating, CreatedAt: now}
	members := make([]*store.Snapshot, 0, len(srcIDs))
	for i, srcID := range srcIDs {
		src, err := c.store.Volume(srcID)
		if errors.Is(err, store.ErrNotFound) {
			return nil, nil, errorf(codes.NotFound, "source_volume_ids[%d]: volume %q not found", i, srcID)
		} else if err != nil {
			return nil, nil, internalOr(err, "read volume record")
		}
		if src.State != store.StateReady {
			return nil, nil, errorf(codes.FailedPrecondition, "source_volume_ids[%d]: volume %s is %s", i, srcID, src.State)
		}
		if _, err := c.pool.Size(srcID); err != nil {
			return nil, nil, errorf(codes.FailedPrecondition, "source_volume_ids[%d]: volume %s: data unavailable: %v", i, srcID, err)
		}
		id, err := newID(pool.SnapshotPrefix)
		if err != nil {
			return nil, nil, internalOr(err, "snapshot ID")
		}
		members = append(members, &store.Snapshot{ID: id, SourceVolumeID: srcID, SizeBytes: src.SizeBytes,
			State: store.StateCreating, CreatedAt: now, GroupID: gid})
		group.SnapshotIDs = append(group.SnapshotIDs, id)
	}
	if err := c.store.InsertGroup(group, members, c.capacity); err != nil {
		if errors.Is(err, store.ErrCapacity) {
			return nil, nil, errorf(codes.ResourceExhausted, "group snapshot %q: pool is full: %v", name, err)
		}
		return nil, nil, internalOr(err, "write group snapshot record")
	}
	return group, members, nil
}

// dropGroup removes a group's files and then its records: the records stay
// until the files are gone, so an interrupted drop is finished by reconcile.
func (c *ControllerServer) dropGroup(group *store.Group) error {
	if err := c.store.SetGroupState(group.ID, store.StateDeleting); err != nil && !errors.Is(err, store.ErrNotFound) {
		return internalOr(err, "mark group snapshot deleting")
	}
	for _, id := range group.SnapshotIDs {
		if err := c.pool.Remove(id); err != nil {
			return internalOr(err, "remove snapshot file "+id)
		}
	}
	if err := c.store.DeleteGroup(group.ID); err != nil {
		return internalOr(err, "remove group snapshot record")
	}
	return nil
}

// DeleteVolumeGroupSnapshot implements csi.GroupControllerServer: the group
// and all its member snapshots go.
func (c *ControllerServer) DeleteVolumeGroupSnapshot(_ context.Context, req *csi.DeleteVolumeGroupSnapshotRequest) (*csi.DeleteVolumeGroupSnapshotResponse, error) {
	id := req.GetGroupSnapshotId()
	if id == "" {
		return nil, errorf(codes.InvalidArgument, "group_snapshot_id is required")
	}
	release, err := c.acquireAll([]string{id})
	if err != nil {
		return nil, err
	}
	defer release()
	group, _, err := c.store.Group(id)
	if errors.Is(err, store.ErrNotFound) {
		return &csi.DeleteVolumeGroupSnapshotResponse{}, nil
	} else if err != nil {
		return nil, internalOr(err, "read group snapshot record")
	}
	if err := checkSnapshotIDs(group, req.GetSnapshotIds()); err != nil {
		return nil, err
	}
	if err := c.dropGroup(group); err != nil {
		return nil, err
	}
	klog.InfoS("Group snapshot deleted", "groupSnapshot", id, "name", group.Name, "snapshots", group.SnapshotIDs)
	return &csi.DeleteVolumeGroupSnapshotResponse{}, nil
}

// GetVolumeGroupSnapshot implements csi.GroupControllerServer.
func (c *ControllerServer) GetVolumeGroupSnapshot(_ context.Context, req *csi.GetVolumeGroupSnapshotRequest) (*csi.GetVolumeGroupSnapshotResponse, error) {
	id := req.GetGroupSnapshotId()
	if id == "" {
		return nil, errorf(codes.InvalidArgument, "group_snapshot_id is required")
	}
	group, members, err := c.store.Group(id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errorf(codes.NotFound, "group_snapshot_id %q not found", id)
	} else if err != nil {
		return nil, internalOr(err, "read group snapshot record")
	}
	if err := checkSnapshotIDs(group, req.GetSnapshotIds()); err != nil {
		return nil, err
	}
	return &csi.GetVolumeGroupSnapshotResponse{GroupSnapshot: csiGroup(group, members)}, nil
}

// checkSnapshotIDs: the caller's list of members (optional) must be the group's.
func checkSnapshotIDs(group *store.Group, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	a, b := slices.Clone(ids), slices.Clone(group.SnapshotIDs)
	slices.Sort(a)
	slices.Sort(b)
	if !slices.Equal(a, b) {
		return errorf(codes.InvalidArgument, "snapshot_ids %v are not the members of group snapshot %s %v", ids, group.ID, group.SnapshotIDs)
	}
	return nil
}

// acquireAll takes every key or none (Aborted naming the busy one).
func (c *ControllerServer) acquireAll(keys []string) (func(), error) {
	var releases []func()
	releaseAll := func() {
		for _, r := range releases {
			r()
		}
	}
	for _, k := range keys {
		r, ok := c.inFlight.Acquire(k)
		if !ok {
			releaseAll()
			return nil, abortedBusy(k)
		}
		releases = append(releases, r)
	}
	return releaseAll, nil
}

func sourcesOf(members []*store.Snapshot) []string {
	out := make([]string, len(members))
	for i, m := range members {
		out[i] = m.SourceVolumeID
	}
	return out
}

func sameVolumes(members []*store.Snapshot, srcIDs []string) bool {
	a, b := sourcesOf(members), slices.Clone(srcIDs)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func csiGroup(g *store.Group, members []*store.Snapshot) *csi.VolumeGroupSnapshot {
	out := &csi.VolumeGroupSnapshot{GroupSnapshotId: g.ID, CreationTime: timestamppb.New(g.CreatedAt),
		ReadyToUse: g.State == store.StateReady}
	for _, m := range members {
		out.Snapshots = append(out.Snapshots, csiSnapshot(m))
	}
	return out
}

// memberError refuses to handle one member of a group on its own.
func memberError(rec *store.Snapshot, what string) error {
	return errorf(codes.FailedPrecondition, "snapshot %s is a member of group snapshot %s: %s", rec.ID, rec.GroupID,
		fmt.Sprintf("%s it with DeleteVolumeGroupSnapshot", what))
}
