package fakedriver

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

type controllerServer struct {
	csi.UnimplementedControllerServer
	d *Driver
}

func (s *controllerServer) ControllerGetCapabilities(context.Context, *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	var caps []*csi.ControllerServiceCapability
	for _, t := range slices.Sorted(maps.Keys(s.d.controllerOn)) {
		caps = append(caps, &csi.ControllerServiceCapability{Type: &csi.ControllerServiceCapability_Rpc{
			Rpc: &csi.ControllerServiceCapability_RPC{Type: t},
		}})
	}
	return &csi.ControllerGetCapabilitiesResponse{Capabilities: caps}, nil
}

func (s *controllerServer) CreateVolume(_ context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	d := s.d
	if err := d.requireCap(csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME); err != nil {
		return nil, err
	}
	if req.GetName() == "" {
		return nil, invalid("name is required")
	}
	if err := d.validateCapabilities("volume_capabilities", req.GetVolumeCapabilities()); err != nil {
		return nil, err
	}
	if len(req.GetMutableParameters()) > 0 {
		if err := d.requireCap(csi.ControllerServiceCapability_RPC_MODIFY_VOLUME); err != nil {
			return nil, invalid("mutable_parameters given but driver %s does not support MODIFY_VOLUME", d.opts.Name)
		}
		if err := d.validateMutable("mutable_parameters", req.GetMutableParameters()); err != nil {
			return nil, err
		}
	}
	srcSnap, srcVol, err := contentSourceIDs(req.GetVolumeContentSource())
	if err != nil {
		return nil, err
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	if v := d.state.volumeByName(req.GetName()); v != nil {
		if err := compatible(v, req, srcSnap, srcVol); err != nil {
			return nil, err
		}
		return &csi.CreateVolumeResponse{Volume: csiVolume(v)}, nil
	}
	floor, err := d.sourceSizeLocked(srcSnap, srcVol)
	if err != nil {
		return nil, err
	}
	size, err := d.volumeSize(req.GetCapacityRange(), floor)
	if err != nil {
		return nil, err
	}
	var topo []map[string]string
	if srcVol != "" && d.state.Volumes[srcVol].AccessibleTopology != nil {
		topo, err = d.cloneZone(d.state.Volumes[srcVol], req.GetAccessibilityRequirements())
	} else {
		topo, err = d.placeVolume(req.GetAccessibilityRequirements())
	}
	if err != nil {
		return nil, err
	}
	if free := d.freeBytesLocked(); size > free {
		return nil, status.Errorf(codes.ResourceExhausted, "not enough capacity: volume needs %d bytes, pool has %d free", size, free)
	}
	v := &Volume{
		ID:                 newID("vol"),
		Name:               req.GetName(),
		CapacityBytes:      size,
		Parameters:         maps.Clone(req.GetParameters()),
		MutableParameters:  maps.Clone(req.GetMutableParameters()),
		Block:              wantsBlock(req.GetVolumeCapabilities()),
		SourceSnapshotID:   srcSnap,
		SourceVolumeID:     srcVol,
		AccessibleTopology: topo,
		CreatedAt:          time.Now(),
	}
	v.VolumeContext = map[string]string{"fakeVolumeName": v.Name}
	d.state.Volumes[v.ID] = v
	if err := d.saveStatus(); err != nil {
		return nil, err
	}
	return &csi.CreateVolumeResponse{Volume: csiVolume(v)}, nil
}

func contentSourceIDs(src *csi.VolumeContentSource) (snapshotID, volumeID string, err error) {
	if src == nil {
		return "", "", nil
	}
	switch t := src.GetType().(type) {
	case *csi.VolumeContentSource_Snapshot:
		if t.Snapshot.GetSnapshotId() == "" {
			return "", "", invalid("volume_content_source.snapshot.snapshot_id is required")
		}
		return t.Snapshot.GetSnapshotId(), "", nil
	case *csi.VolumeContentSource_Volume:
		if t.Volume.GetVolumeId() == "" {
			return "", "", invalid("volume_content_source.volume.volume_id is required")
		}
		return "", t.Volume.GetVolumeId(), nil
	default:
		return "", "", invalid("volume_content_source must name a snapshot or a volume")
	}
}

// sourceSizeLocked checks that the content source exists and returns its size.
func (d *Driver) sourceSizeLocked(snapID, volID string) (int64, error) {
	switch {
	case snapID != "":
		if err := d.requireCap(csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT); err != nil {
			return 0, err
		}
		sn, ok := d.state.Snapshots[snapID]
		if !ok {
			return 0, status.Errorf(codes.NotFound, "volume_content_source.snapshot.snapshot_id %q not found", snapID)
		}
		if d.refreshReadiness(sn); !sn.ReadyToUse {
			return 0, status.Errorf(codes.Unavailable, "volume_content_source.snapshot.snapshot_id %q is not ready to use yet", snapID)
		}
		return sn.SizeBytes, nil
	case volID != "":
		if err := d.requireCap(csi.ControllerServiceCapability_RPC_CLONE_VOLUME); err != nil {
			return 0, err
		}
		v, ok := d.state.Volumes[volID]
		if !ok {
			return 0, status.Errorf(codes.NotFound, "volume_content_source.volume.volume_id %q not found", volID)
		}
		return v.CapacityBytes, nil
	}
	return 0, nil
}

// compatible decides whether a repeated CreateVolume may return the volume
// created earlier under the same name.
func compatible(v *Volume, req *csi.CreateVolumeRequest, srcSnap, srcVol string) error {
	switch {
	case !fitsRange(v.CapacityBytes, req.GetCapacityRange()):
		return status.Errorf(codes.AlreadyExists, "volume %q exists with %d bytes, outside capacity_range [%d, %d]",
			v.Name, v.CapacityBytes, req.GetCapacityRange().GetRequiredBytes(), req.GetCapacityRange().GetLimitBytes())
	case v.SourceSnapshotID != srcSnap || v.SourceVolumeID != srcVol:
		return status.Errorf(codes.AlreadyExists, "volume %q exists with a different volume_content_source", v.Name)
	case !maps.Equal(v.Parameters, req.GetParameters()):
		return status.Errorf(codes.AlreadyExists, "volume %q exists with different parameters", v.Name)
	case !maps.Equal(v.MutableParameters, req.GetMutableParameters()) && len(req.GetMutableParameters()) > 0:
		return status.Errorf(codes.AlreadyExists, "volume %q exists with different mutable_parameters", v.Name)
	}
	return nil
}

func csiVolume(v *Volume) *csi.Volume {
	out := &csi.Volume{
		VolumeId:           v.ID,
		CapacityBytes:      v.CapacityBytes,
		VolumeContext:      maps.Clone(v.VolumeContext),
		AccessibleTopology: toCSITopology(v.AccessibleTopology),
	}
	switch {
	case v.SourceSnapshotID != "":
		out.ContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
			Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: v.SourceSnapshotID}}}
	case v.SourceVolumeID != "":
		out.ContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{
			Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: v.SourceVolumeID}}}
	}
	return out
}

func (s *controllerServer) DeleteVolume(_ context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	d := s.d
	if err := d.requireCap(csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME); err != nil {
		return nil, err
	}
	if req.GetVolumeId() == "" {
		return nil, invalid("volume_id is required")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	v, ok := d.state.Volumes[req.GetVolumeId()]
	if !ok {
		return &csi.DeleteVolumeResponse{}, nil // already gone: success, per spec
	}
	if len(v.Attachments) > 0 {
		return nil, status.Errorf(codes.FailedPrecondition, "volume %s is still published to node(s) %q",
			v.ID, slices.Sorted(maps.Keys(v.Attachments)))
	}
	delete(d.state.Volumes, v.ID)
	if err := d.saveStatus(); err != nil {
		return nil, err
	}
	return &csi.DeleteVolumeResponse{}, nil
}

func (s *controllerServer) ValidateVolumeCapabilities(_ context.Context, req *csi.ValidateVolumeCapabilitiesRequest) (*csi.ValidateVolumeCapabilitiesResponse, error) {
	d := s.d
	if req.GetVolumeId() == "" {
		return nil, invalid("volume_id is required")
	}
	if err := d.validateCapabilities("volume_capabilities", req.GetVolumeCapabilities()); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	v, ok := d.state.Volumes[req.GetVolumeId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "volume_id %q not found", req.GetVolumeId())
	}
	for _, c := range req.GetVolumeCapabilities() {
		if (c.GetBlock() != nil) != v.Block {
			return &csi.ValidateVolumeCapabilitiesResponse{Message: "access type (block/mount) differs from the volume's"}, nil
		}
	}
	return &csi.ValidateVolumeCapabilitiesResponse{Confirmed: &csi.ValidateVolumeCapabilitiesResponse_Confirmed{
		VolumeContext:      req.GetVolumeContext(),
		VolumeCapabilities: req.GetVolumeCapabilities(),
		Parameters:         req.GetParameters(),
		MutableParameters:  req.GetMutableParameters(),
	}}, nil
}

func (s *controllerServer) ListVolumes(_ context.Context, req *csi.ListVolumesRequest) (*csi.ListVolumesResponse, error) {
	d := s.d
	if err := d.requireCap(csi.ControllerServiceCapability_RPC_LIST_VOLUMES); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	ids := slices.Sorted(maps.Keys(d.state.Volumes))
	ids, next, err := page(ids, req.GetStartingToken(), req.GetMaxEntries())
	if err != nil {
		return nil, err
	}
	resp := &csi.ListVolumesResponse{NextToken: next}
	for _, id := range ids {
		v := d.state.Volumes[id]
		e := &csi.ListVolumesResponse_Entry{Volume: csiVolume(v)}
		if d.controllerOn[csi.ControllerServiceCapability_RPC_LIST_VOLUMES_PUBLISHED_NODES] {
			e.Status = &csi.ListVolumesResponse_VolumeStatus{PublishedNodeIds: slices.Sorted(maps.Keys(v.Attachments))}
		}
		if d.controllerOn[CapVolumeCondition] {
			if e.Status == nil {
				e.Status = &csi.ListVolumesResponse_VolumeStatus{}
			}
			d.addLegacyCondition(e.Status, id)
		}
		resp.Entries = append(resp.Entries, e)
	}
	return resp, nil
}

func (s *controllerServer) ControllerGetVolume(_ context.Context, req *csi.ControllerGetVolumeRequest) (*csi.ControllerGetVolumeResponse, error) {
	d := s.d
	if err := d.requireCap(csi.ControllerServiceCapability_RPC_GET_VOLUME); err != nil {
		return nil, err
	}
	if req.GetVolumeId() == "" {
		return nil, invalid("volume_id is required")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	v, ok := d.state.Volumes[req.GetVolumeId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "volume_id %q not found", req.GetVolumeId())
	}
	resp := &csi.ControllerGetVolumeResponse{Volume: csiVolume(v), Status: &csi.ControllerGetVolumeResponse_VolumeStatus{}}
	if d.controllerOn[csi.ControllerServiceCapability_RPC_LIST_VOLUMES_PUBLISHED_NODES] {
		resp.Status.PublishedNodeIds = slices.Sorted(maps.Keys(v.Attachments))
	}
	d.addLegacyCondition(resp.Status, v.ID)
	return resp, nil
}

func (s *controllerServer) GetCapacity(_ context.Context, req *csi.GetCapacityRequest) (*csi.GetCapacityResponse, error) {
	d := s.d
	if err := d.requireCap(csi.ControllerServiceCapability_RPC_GET_CAPACITY); err != nil {
		return nil, err
	}
	for i, c := range req.GetVolumeCapabilities() {
		if err := d.validateCapability(fmt.Sprintf("volume_capabilities[%d]", i), c); err != nil {
			return nil, err
		}
	}
	if d.opts.Topology && req.GetAccessibleTopology() != nil {
		if !d.knownZone(req.GetAccessibleTopology().GetSegments()[d.opts.TopologyKey]) {
			return &csi.GetCapacityResponse{AvailableCapacity: 0}, nil
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return &csi.GetCapacityResponse{AvailableCapacity: d.freeBytesLocked()}, nil
}

func (s *controllerServer) ControllerExpandVolume(_ context.Context, req *csi.ControllerExpandVolumeRequest) (*csi.ControllerExpandVolumeResponse, error) {
	d := s.d
	if err := d.requireCap(csi.ControllerServiceCapability_RPC_EXPAND_VOLUME); err != nil {
		return nil, err
	}
	if req.GetVolumeId() == "" {
		return nil, invalid("volume_id is required")
	}
	if req.GetCapacityRange().GetRequiredBytes() <= 0 {
		return nil, invalid("capacity_range.required_bytes is required")
	}
	if req.GetVolumeCapability() != nil {
		if err := d.validateCapability("volume_capability", req.GetVolumeCapability()); err != nil {
			return nil, err
		}
	}
	size, err := d.volumeSize(req.GetCapacityRange(), 0)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	v, ok := d.state.Volumes[req.GetVolumeId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "volume_id %q not found", req.GetVolumeId())
	}
	if size > v.CapacityBytes { // never shrink; a repeated call is a no-op
		if free := d.freeBytesLocked(); size-v.CapacityBytes > free {
			return nil, status.Errorf(codes.ResourceExhausted, "not enough capacity: growing to %d bytes needs %d, pool has %d free",
				size, size-v.CapacityBytes, free)
		}
		v.CapacityBytes = size
		if err := d.saveStatus(); err != nil {
			return nil, err
		}
	}
	return &csi.ControllerExpandVolumeResponse{CapacityBytes: v.CapacityBytes, NodeExpansionRequired: d.opts.NodeExpansionRequired}, nil
}

func (s *controllerServer) ControllerModifyVolume(_ context.Context, req *csi.ControllerModifyVolumeRequest) (*csi.ControllerModifyVolumeResponse, error) {
	d := s.d
	if err := d.requireCap(csi.ControllerServiceCapability_RPC_MODIFY_VOLUME); err != nil {
		return nil, err
	}
	if req.GetVolumeId() == "" {
		return nil, invalid("volume_id is required")
	}
	if len(req.GetMutableParameters()) == 0 {
		return nil, invalid("mutable_parameters is required")
	}
	if err := d.validateMutable("mutable_parameters", req.GetMutableParameters()); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	v, ok := d.state.Volumes[req.GetVolumeId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "volume_id %q not found", req.GetVolumeId())
	}
	if v.MutableParameters == nil {
		v.MutableParameters = map[string]string{}
	}
	maps.Copy(v.MutableParameters, req.GetMutableParameters())
	if err := d.saveStatus(); err != nil {
		return nil, err
	}
	return &csi.ControllerModifyVolumeResponse{}, nil
}
