package plugin

import (
	"context"
	"errors"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/plugin/pool"
	"github.com/csi-hub/csi-hub/plugin/store"
)

// ControllerExpandVolume implements csi.ControllerServer. The target size is
// recorded before the file grows, so a crash mid-way is finished at start-up.
func (c *ControllerServer) ControllerExpandVolume(ctx context.Context, req *csi.ControllerExpandVolumeRequest) (*csi.ControllerExpandVolumeResponse, error) {
	id := req.GetVolumeId()
	if id == "" {
		return nil, errorf(codes.InvalidArgument, "volume_id is required")
	}
	if req.GetCapacityRange() == nil {
		return nil, errorf(codes.InvalidArgument, "capacity_range is required")
	}
	if req.GetVolumeCapability() != nil {
		if _, err := checkCapability("volume_capability", req.GetVolumeCapability()); err != nil {
			return nil, err
		}
	}
	release, ok := c.inFlight.Acquire(id)
	if !ok {
		return nil, abortedBusy(id)
	}
	defer release()
	rec, err := c.store.Volume(id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errorf(codes.NotFound, "volume_id %q not found", id)
	} else if err != nil {
		return nil, internalOr(err, "read volume record")
	}
	if rec.State != store.StateReady {
		return nil, errorf(codes.FailedPrecondition, "volume_id %s is %s", id, rec.State)
	}
	size, err := volumeSize(req.GetCapacityRange(), 0)
	if err != nil {
		return nil, err
	}
	nodeExpansion := needsNodeExpansion(rec, req.GetVolumeCapability())
	if size <= rec.SizeBytes {
		if lim := req.GetCapacityRange().GetLimitBytes(); lim > 0 && rec.SizeBytes > lim {
			return nil, errorf(codes.OutOfRange, "capacity_range.limit_bytes %d is below the current size %d (volumes never shrink)", lim, rec.SizeBytes)
		}
		return &csi.ControllerExpandVolumeResponse{CapacityBytes: rec.SizeBytes, NodeExpansionRequired: nodeExpansion}, nil
	}
	oldSize := rec.SizeBytes
	rec, err = c.store.BeginExpandVolume(id, size, c.capacity)
	if errors.Is(err, store.ErrCapacity) {
		return nil, errorf(codes.ResourceExhausted, "capacity_range.required_bytes: pool is full: %v", err)
	} else if err != nil {
		return nil, internalOr(err, "record expansion")
	}
	if err := c.pool.Resize(id, size, pool.IsThick(rec.Parameters)); err != nil {
		// Nothing on the volume uses the new range yet, so shrinking back is safe.
		if rbErr := c.shrinkBack(rec, oldSize); rbErr != nil {
			klog.ErrorS(rbErr, "Rollback of failed expansion failed; start-up reconcile will finish it", "volume", id)
		}
		if errors.Is(err, pool.ErrNoSpace) {
			return nil, errorf(codes.ResourceExhausted, "capacity_range.required_bytes: pool filesystem is full: %v", err)
		}
		return nil, internalOr(err, "grow backing file of "+id)
	}
	rec.SizeBytes, rec.ExpandingTo = size, 0
	if err := c.store.UpdateVolume(rec); err != nil {
		return nil, internalOr(err, "record new size")
	}
	if err := c.target.Resized(ctx, c.transportVolume(rec)); err != nil {
		return nil, internalOr(err, "tell transport about new size")
	}
	klog.InfoS("Volume expanded", "volume", id, "from", oldSize, "to", size)
	return &csi.ControllerExpandVolumeResponse{CapacityBytes: size, NodeExpansionRequired: nodeExpansion}, nil
}

func (c *ControllerServer) shrinkBack(rec *store.Volume, oldSize int64) error {
	if err := truncateFile(c.pool.Path(rec.ID), oldSize); err != nil {
		return err
	}
	rec.ExpandingTo = 0
	return c.store.UpdateVolume(rec)
}

// needsNodeExpansion: a filesystem must be grown on the node, and a raw block
// device must be rescanned there too (a loop device does not notice its file
// grew), so the node is always involved.
func needsNodeExpansion(*store.Volume, *csi.VolumeCapability) bool { return true }

// ControllerModifyVolume implements csi.ControllerServer. Mutable parameters:
// type (thin -> thick preallocates the file; thick -> thin only changes the
// record, later growth stays sparse) and tier (a label).
func (c *ControllerServer) ControllerModifyVolume(_ context.Context, req *csi.ControllerModifyVolumeRequest) (*csi.ControllerModifyVolumeResponse, error) {
	id := req.GetVolumeId()
	if id == "" {
		return nil, errorf(codes.InvalidArgument, "volume_id is required")
	}
	// An empty mutable_parameters is a valid no-op (the CSI spec does not
	// require any key, and csi-sanity's default invocation sends none), but
	// the volume must still exist, as for the upstream hostpath driver.
	params, err := volumeParams("mutable_parameters", req.GetMutableParameters(), true)
	if err != nil {
		return nil, err
	}
	release, ok := c.inFlight.Acquire(id)
	if !ok {
		return nil, abortedBusy(id)
	}
	defer release()
	rec, err := c.store.Volume(id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errorf(codes.NotFound, "volume_id %q not found", id)
	} else if err != nil {
		return nil, internalOr(err, "read volume record")
	}
	if rec.State != store.StateReady {
		return nil, errorf(codes.FailedPrecondition, "volume_id %s is %s", id, rec.State)
	}
	if len(params) == 0 {
		return &csi.ControllerModifyVolumeResponse{}, nil
	}
	if params[ParamType] == pool.TypeThick && !pool.IsThick(rec.Parameters) {
		if err := c.pool.Resize(id, rec.SizeBytes, true); err != nil {
			if errors.Is(err, pool.ErrNoSpace) {
				return nil, errorf(codes.ResourceExhausted, "mutable_parameters[%q]: pool filesystem has no room to preallocate %s: %v", ParamType, id, err)
			}
			return nil, internalOr(err, "preallocate "+id)
		}
	}
	if rec.Parameters == nil {
		rec.Parameters = map[string]string{}
	}
	for k, v := range params {
		rec.Parameters[k] = v
	}
	if err := c.store.UpdateVolume(rec); err != nil {
		return nil, internalOr(err, "record parameters")
	}
	klog.InfoS("Volume modified", "volume", id, "parameters", formatParams(params))
	return &csi.ControllerModifyVolumeResponse{}, nil
}
