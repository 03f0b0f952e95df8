package plugin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/plugin/pool"
	"github.com/csi-hub/csi-hub/plugin/store"
)

const (
	// DefaultVolumeSize is used when the request gives no capacity.
	DefaultVolumeSize int64 = 1 << 30
	// sizeAlign rounds sizes up so loop devices and filesystems see whole blocks.
	sizeAlign int64 = 1 << 20
)

// fsMinimumSizes: below these the node's mkfs refuses (xfs) or silently makes
// something else: mkfs.ext3 leaves out the journal on fewer than 2048 blocks,
// and that filesystem does not mount as ext3. Smaller requests are rounded up.
var fsMinimumSizes = map[string]int64{"xfs": 300 << 20, "ext3": 4 << 20}

// fsMinimumSize is the largest minimum among the requested filesystems.
func fsMinimumSize(caps []store.Capability) (int64, string) {
	var size int64
	var fsType string
	for _, c := range caps {
		if m := fsMinimumSizes[c.FsType]; !c.Block && m > size {
			size, fsType = m, c.FsType
		}
	}
	return size, fsType
}

// volumeSize picks the size for a capacity range: required rounded up to 1 MiB,
// at least minSize (a content source's size), within the limit.
func volumeSize(cr *csi.CapacityRange, minSize int64) (int64, error) {
	required, limit := cr.GetRequiredBytes(), cr.GetLimitBytes()
	if required < 0 {
		return 0, errorf(codes.OutOfRange, "capacity_range.required_bytes %d is negative", required)
	}
	if limit < 0 {
		return 0, errorf(codes.OutOfRange, "capacity_range.limit_bytes %d is negative", limit)
	}
	if limit > 0 && required > limit {
		return 0, errorf(codes.OutOfRange, "capacity_range.required_bytes %d exceeds capacity_range.limit_bytes %d", required, limit)
	}
	if limit > 0 && minSize > limit {
		return 0, errorf(codes.OutOfRange, "capacity_range.limit_bytes %d is smaller than the content source (%d bytes)", limit, minSize)
	}
	size := required
	if size == 0 {
		size = DefaultVolumeSize
		if limit > 0 {
			size = min(size, limit)
		}
	}
	size = max(size, minSize)
	if r := (size + sizeAlign - 1) / sizeAlign * sizeAlign; limit == 0 || r <= limit {
		size = r
	} else if r := (size + 4095) / 4096 * 4096; r <= limit {
		size = r // a limit that is not MiB-aligned still gets whole 4 KiB blocks
	}
	return size, nil
}

// checkTopology fails when the requisite topology excludes the only segment
// this driver's volumes can live in. Preferred topology alone never fails:
// the spec lets the driver pick any segment then.
func (c *ControllerServer) checkTopology(req *csi.TopologyRequirement) error {
	if len(req.GetRequisite()) == 0 {
		return nil
	}
	for _, t := range req.GetRequisite() {
		if c.topologyMatches(t.GetSegments()) {
			return nil
		}
	}
	var want []string
	for _, t := range req.GetRequisite() {
		want = append(want, formatParams(t.GetSegments()))
	}
	return errorf(codes.ResourceExhausted,
		"accessibility_requirements.requisite %s cannot be met: volumes of this driver are only reachable from %s",
		strings.Join(want, ", "), formatParams(c.topology))
}

// topologyMatches tells whether a segment set selects this driver's segment.
func (c *ControllerServer) topologyMatches(seg map[string]string) bool {
	for k, v := range seg {
		if c.topology[k] != v {
			return false
		}
	}
	return true
}

// contentSource resolves the request's source into a record and its size.
func (c *ControllerServer) contentSource(src *csi.VolumeContentSource) (*store.ContentSource, int64, error) {
	if src == nil {
		return nil, 0, nil
	}
	switch t := src.GetType().(type) {
	case *csi.VolumeContentSource_Snapshot:
		id := t.Snapshot.GetSnapshotId()
		if id == "" {
			return nil, 0, errorf(codes.InvalidArgument, "volume_content_source.snapshot.snapshot_id is required")
		}
		snap, err := c.store.Snapshot(id)
		if errors.Is(err, store.ErrNotFound) {
			return nil, 0, errorf(codes.NotFound, "volume_content_source.snapshot.snapshot_id %q not found", id)
		} else if err != nil {
			return nil, 0, internalOr(err, "read snapshot")
		}
		if snap.State != store.StateReady {
			return nil, 0, errorf(codes.FailedPrecondition, "volume_content_source.snapshot.snapshot_id %q is %s", id, snap.State)
		}
		if _, err := c.pool.Size(id); err != nil {
			return nil, 0, errorf(codes.FailedPrecondition, "volume_content_source.snapshot.snapshot_id %s: data unavailable: %v", id, err)
		}
		return &store.ContentSource{SnapshotID: id}, snap.SizeBytes, nil
	case *csi.VolumeContentSource_Volume:
		id := t.Volume.GetVolumeId()
		if id == "" {
			return nil, 0, errorf(codes.InvalidArgument, "volume_content_source.volume.volume_id is required")
		}
		vol, err := c.store.Volume(id)
		if errors.Is(err, store.ErrNotFound) {
			return nil, 0, errorf(codes.NotFound, "volume_content_source.volume.volume_id %q not found", id)
		} else if err != nil {
			return nil, 0, internalOr(err, "read volume")
		}
		if vol.State != store.StateReady {
			return nil, 0, errorf(codes.FailedPrecondition, "volume_content_source.volume.volume_id %q is %s", id, vol.State)
		}
		if _, err := c.pool.Size(id); err != nil {
			return nil, 0, errorf(codes.FailedPrecondition, "volume_content_source.volume.volume_id %s: data unavailable: %v", id, err)
		}
		return &store.ContentSource{VolumeID: id}, vol.SizeBytes, nil
	default:
		return nil, 0, errorf(codes.InvalidArgument, "volume_content_source has no snapshot or volume")
	}
}

// CreateVolume implements csi.ControllerServer. The record is written in state
// "creating" before the file exists, and marked "ready" only once the file is
// complete under its final name, so a crash anywhere leaves something the
// start-up reconcile can finish or roll back.
func (c *ControllerServer) CreateVolume(ctx context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	name := req.GetName()
	if name == "" {
		return nil, errorf(codes.InvalidArgument, "name is required")
	}
	caps, err := checkCapabilities("volume_capabilities", req.GetVolumeCapabilities())
	if err != nil {
		return nil, err
	}
	params, err := volumeParams("parameters", req.GetParameters(), false)
	if err != nil {
		return nil, err
	}
	mutable, err := volumeParams("mutable_parameters", req.GetMutableParameters(), true)
	if err != nil {
		return nil, err
	}
	for k, v := range mutable {
		params[k] = v
	}
	if err := c.checkTopology(req.GetAccessibilityRequirements()); err != nil {
		return nil, err
	}
	release, ok := c.inFlight.Acquire("volume-name/" + name)
	if !ok {
		return nil, abortedBusy("volume " + name)
	}
	defer release()
	source, sourceSize, err := c.contentSource(req.GetVolumeContentSource())
	if err != nil {
		return nil, err
	}
	if source != nil {
		// A restore or clone must not race a delete or expand of its source.
		srcID := source.VolumeID + source.SnapshotID
		releaseSrc, ok := c.inFlight.Acquire(srcID)
		if !ok {
			return nil, abortedBusy(srcID)
		}
		defer releaseSrc()
	}
	fsMin, fsType := fsMinimumSize(caps)
	if lim := req.GetCapacityRange().GetLimitBytes(); lim > 0 && lim < fsMin {
		return nil, errorf(codes.OutOfRange, "capacity_range.limit_bytes %d is below the %d bytes a %s filesystem needs", lim, fsMin, fsType)
	}
	size, err := volumeSize(req.GetCapacityRange(), max(sourceSize, fsMin))
	if err != nil {
		return nil, err
	}

	existing, err := c.store.VolumeByName(name)
	switch {
	case err == nil && existing.State == store.StateReady:
		if err := sameVolume(existing, req, size, params, source); err != nil {
			return nil, err
		}
		return &csi.CreateVolumeResponse{Volume: c.csiVolume(existing)}, nil
	case err == nil && existing.State == store.StateDeleting:
		return nil, errorf(codes.Aborted, "volume %q (%s) is being deleted", name, existing.ID)
	case err == nil:
		// A create that failed to clean up after itself: resume it under the same ID.
		if err := sameVolume(existing, req, size, params, source); err != nil {
			return nil, err
		}
		return c.fillVolume(ctx, existing)
	case !errors.Is(err, store.ErrNotFound):
		return nil, internalOr(err, "read volume record")
	}

	id, err := newID(pool.VolumePrefix)
	if err != nil {
		return nil, internalOr(err, "volume ID")
	}
	rec := &store.Volume{ID: id, Name: name, SizeBytes: size, Parameters: params, Capabilities: caps,
		ContentSource: source, State: store.StateCreating, CreatedAt: time.Now().UTC()}
	if err := c.store.InsertVolume(rec, c.capacity); err != nil {
		if errors.Is(err, store.ErrCapacity) {
			return nil, errorf(codes.ResourceExhausted, "capacity_range: pool is full: %v", err)
		}
		return nil, internalOr(err, "write volume record")
	}
	return c.fillVolume(ctx, rec)
}

// fillVolume creates the backing file of a "creating" record, exports it and
// marks it ready; on failure it removes file and record so nothing leaks.
func (c *ControllerServer) fillVolume(ctx context.Context, rec *store.Volume) (*csi.CreateVolumeResponse, error) {
	thick := pool.IsThick(rec.Parameters)
	var err error
	switch {
	case rec.ContentSource == nil:
		err = c.pool.Create(rec.ID, rec.SizeBytes, thick)
	case rec.ContentSource.SnapshotID != "":
		err = c.pool.CreateFrom(rec.ID, rec.ContentSource.SnapshotID, rec.SizeBytes, thick)
	default:
		err = c.pool.CreateFrom(rec.ID, rec.ContentSource.VolumeID, rec.SizeBytes, thick)
	}
	if err == nil {
		err = c.target.Export(ctx, c.transportVolume(rec))
	}
	if err == nil {
		rec.State = store.StateReady
		err = c.store.UpdateVolume(rec)
	}
	if err != nil {
		c.rollBackVolume(ctx, rec)
		if errors.Is(err, pool.ErrNoSpace) {
			return nil, errorf(codes.ResourceExhausted, "capacity_range: pool filesystem has no room for %d bytes: %v", rec.SizeBytes, err)
		}
		return nil, internalOr(err, "create volume "+rec.ID)
	}
	klog.InfoS("Volume created", "volume", rec.ID, "name", rec.Name, "size", rec.SizeBytes, "thick", thick)
	return &csi.CreateVolumeResponse{Volume: c.csiVolume(rec)}, nil
}

func (c *ControllerServer) rollBackVolume(ctx context.Context, rec *store.Volume) {
	if err := c.target.Unexport(ctx, c.transportVolume(rec)); err != nil {
		klog.ErrorS(err, "Rollback: unexport failed", "volume", rec.ID)
	}
	if err := c.pool.Remove(rec.ID); err != nil {
		klog.ErrorS(err, "Rollback: removing file failed; start-up reconcile will retry", "volume", rec.ID)
		return
	}
	if err := c.store.DeleteVolume(rec.ID); err != nil {
		klog.ErrorS(err, "Rollback: removing record failed; start-up reconcile will retry", "volume", rec.ID)
	}
}

// sameVolume tells whether an existing volume satisfies a repeated create.
func sameVolume(v *store.Volume, req *csi.CreateVolumeRequest, size int64, params map[string]string, src *store.ContentSource) error {
	cr := req.GetCapacityRange()
	if v.SizeBytes < cr.GetRequiredBytes() || (cr.GetLimitBytes() > 0 && v.SizeBytes > cr.GetLimitBytes()) ||
		(cr.GetRequiredBytes() == 0 && cr.GetLimitBytes() == 0 && v.SizeBytes != size) {
		return errorf(codes.AlreadyExists, "name %q: volume %s exists with size %d bytes, incompatible with capacity_range", v.Name, v.ID, v.SizeBytes)
	}
	if !equalParams(v.Parameters, params) {
		return errorf(codes.AlreadyExists, "name %q: volume %s exists with parameters %s, not %s", v.Name, v.ID, formatParams(v.Parameters), formatParams(params))
	}
	var have, want store.ContentSource
	if v.ContentSource != nil {
		have = *v.ContentSource
	}
	if src != nil {
		want = *src
	}
	if have != want {
		return errorf(codes.AlreadyExists, "name %q: volume %s exists with a different volume_content_source", v.Name, v.ID)
	}
	return nil
}

func (c *ControllerServer) csiVolume(v *store.Volume) *csi.Volume {
	vc := map[string]string{}
	for k, val := range v.Parameters {
		vc[k] = val
	}
	out := &csi.Volume{VolumeId: v.ID, CapacityBytes: v.SizeBytes, VolumeContext: vc,
		AccessibleTopology: []*csi.Topology{{Segments: c.topology}}}
	if s := v.ContentSource; s != nil && s.SnapshotID != "" {
		out.ContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
			Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: s.SnapshotID}}}
	} else if s != nil {
		out.ContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{
			Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: s.VolumeID}}}
	}
	return out
}

// DeleteVolume implements csi.ControllerServer. Snapshots of the volume are
// independent copies and survive it.
func (c *ControllerServer) DeleteVolume(ctx context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	id := req.GetVolumeId()
	if id == "" {
		return nil, errorf(codes.InvalidArgument, "volume_id is required")
	}
	release, ok := c.inFlight.Acquire(id)
	if !ok {
		return nil, abortedBusy(id)
	}
	defer release()
	rec, err := c.store.Volume(id)
	if errors.Is(err, store.ErrNotFound) {
		return &csi.DeleteVolumeResponse{}, nil
	} else if err != nil {
		return nil, internalOr(err, "read volume record")
	}
	if len(rec.Attachments) > 0 {
		return nil, errorf(codes.FailedPrecondition, "volume_id %s is still published to node(s) %s; unpublish first",
			id, strings.Join(rec.AttachedNodes(), ", "))
	}
	rec.State = store.StateDeleting
	if err := c.store.UpdateVolume(rec); err != nil {
		return nil, internalOr(err, "mark volume deleting")
	}
	if err := c.target.Unexport(ctx, c.transportVolume(rec)); err != nil {
		return nil, internalOr(err, "unexport "+id)
	}
	if err := c.pool.Remove(id); err != nil {
		return nil, internalOr(err, "remove backing file of "+id)
	}
	if err := c.store.DeleteVolume(id); err != nil {
		return nil, internalOr(err, "remove volume record")
	}
	klog.InfoS("Volume deleted", "volume", id, "name", rec.Name)
	return &csi.DeleteVolumeResponse{}, nil
}

// health reports whether the backing file is as the record says (spec v1.13
// replaced VolumeCondition with VolumeHealth).
func (c *ControllerServer) health(v *store.Volume) *csi.VolumeHealth {
	h := &csi.VolumeHealth{VolumeId: v.ID}
	add := func(t csi.VolumeHealthErrorType, reason, msg string) {
		h.HealthStatuses = append(h.HealthStatuses, &csi.VolumeHealth_VolumeHealthEntry{Status: t, Reason: reason, Message: msg})
	}
	size, err := c.pool.Size(v.ID)
	switch {
	case v.State != store.StateReady:
		add(csi.VolumeHealthErrorType_INACCESSIBLE, "Volume"+strings.ToUpper(string(v.State[:1]))+string(v.State[1:]), fmt.Sprintf("volume is %s", v.State))
	case errors.Is(err, os.ErrNotExist):
		add(csi.VolumeHealthErrorType_DATA_LOSS, "BackingFileMissing", fmt.Sprintf("backing file %s is missing", c.pool.Path(v.ID)))
	case err != nil:
		add(csi.VolumeHealthErrorType_INACCESSIBLE, "BackingFileUnreadable", err.Error())
	case size != v.SizeBytes:
		add(csi.VolumeHealthErrorType_DEGRADED, "BackingFileSizeMismatch", fmt.Sprintf("backing file is %d bytes, record says %d", size, v.SizeBytes))
	}
	return h
}
