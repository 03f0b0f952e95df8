package plugin

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/csi-hub/csi-hub/plugin/pool"
	"github.com/csi-hub/csi-hub/plugin/store"
)

// ValidateVolumeCapabilities implements csi.ControllerServer.
func (c *ControllerServer) ValidateVolumeCapabilities(_ context.Context, req *csi.ValidateVolumeCapabilitiesRequest) (*csi.ValidateVolumeCapabilitiesResponse, error) {
	id := req.GetVolumeId()
	if id == "" {
		return nil, errorf(codes.InvalidArgument, "volume_id is required")
	}
	if len(req.GetVolumeCapabilities()) == 0 {
		return nil, errorf(codes.InvalidArgument, "volume_capabilities is required")
	}
	rec, err := c.store.Volume(id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errorf(codes.NotFound, "volume_id %q not found", id)
	} else if err != nil {
		return nil, internalOr(err, "read volume record")
	}
	// An unsupported capability is a normal "not confirmed" answer, not an error.
	caps, err := checkCapabilities("volume_capabilities", req.GetVolumeCapabilities())
	if err == nil {
		for _, vc := range caps {
			if err = compatibleCapability(rec, vc); err != nil {
				break
			}
		}
	}
	if err == nil && len(req.GetParameters()) > 0 {
		var params map[string]string
		if params, err = volumeParams("parameters", req.GetParameters(), false); err == nil && !equalParams(params, rec.Parameters) {
			err = errorf(codes.InvalidArgument, "parameters %s differ from the volume's %s", formatParams(params), formatParams(rec.Parameters))
		}
	}
	if err != nil {
		return &csi.ValidateVolumeCapabilitiesResponse{Message: statusMessage(err)}, nil
	}
	return &csi.ValidateVolumeCapabilitiesResponse{Confirmed: &csi.ValidateVolumeCapabilitiesResponse_Confirmed{
		VolumeContext:      req.GetVolumeContext(),
		VolumeCapabilities: req.GetVolumeCapabilities(),
		Parameters:         req.GetParameters(),
		MutableParameters:  req.GetMutableParameters(),
	}}, nil
}

func statusMessage(err error) string { return status.Convert(err).Message() }

// pageStart checks a list starting_token: it is the ID to continue from, so
// anything else is a token this driver never handed out (Aborted, per spec).
func pageStart(token, prefix string, maxEntries int32) (string, error) {
	if maxEntries < 0 {
		return "", errorf(codes.InvalidArgument, "max_entries %d is negative", maxEntries)
	}
	if token != "" && (!strings.HasPrefix(token, prefix) || len(token) != len(prefix)+16) {
		return "", errorf(codes.Aborted, "starting_token %q is not a token this driver returned", token)
	}
	return token, nil
}

// ListVolumes implements csi.ControllerServer.
func (c *ControllerServer) ListVolumes(_ context.Context, req *csi.ListVolumesRequest) (*csi.ListVolumesResponse, error) {
	from, err := pageStart(req.GetStartingToken(), pool.VolumePrefix, req.GetMaxEntries())
	if err != nil {
		return nil, err
	}
	recs, next, err := c.store.Volumes(from, int(req.GetMaxEntries()))
	if err != nil {
		return nil, internalOr(err, "list volume records")
	}
	resp := &csi.ListVolumesResponse{NextToken: next}
	for _, v := range recs {
		resp.Entries = append(resp.Entries, &csi.ListVolumesResponse_Entry{
			Volume: c.csiVolume(v),
			Status: &csi.ListVolumesResponse_VolumeStatus{PublishedNodeIds: v.AttachedNodes()},
		})
	}
	return resp, nil
}

// ControllerGetVolume implements csi.ControllerServer.
func (c *ControllerServer) ControllerGetVolume(_ context.Context, req *csi.ControllerGetVolumeRequest) (*csi.ControllerGetVolumeResponse, error) {
	id := req.GetVolumeId()
	if id == "" {
		return nil, errorf(codes.InvalidArgument, "volume_id is required")
	}
	v, err := c.store.Volume(id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errorf(codes.NotFound, "volume_id %q not found", id)
	} else if err != nil {
		return nil, internalOr(err, "read volume record")
	}
	return &csi.ControllerGetVolumeResponse{
		Volume: c.csiVolume(v),
		Status: &csi.ControllerGetVolumeResponse_VolumeStatus{PublishedNodeIds: v.AttachedNodes()},
	}, nil
}

// GetCapacity implements csi.ControllerServer: the bytes still provisionable,
// or 0 for a topology segment this driver's volumes cannot live in.
func (c *ControllerServer) GetCapacity(_ context.Context, req *csi.GetCapacityRequest) (*csi.GetCapacityResponse, error) {
	for i, vc := range req.GetVolumeCapabilities() {
		if _, err := checkCapability(fmt.Sprintf("volume_capabilities[%d]", i), vc); err != nil {
			return nil, err
		}
	}
	if _, err := volumeParams("parameters", req.GetParameters(), false); err != nil {
		return nil, err
	}
	if seg := req.GetAccessibleTopology().GetSegments(); len(seg) > 0 && !c.topologyMatches(seg) {
		return &csi.GetCapacityResponse{AvailableCapacity: 0, MaximumVolumeSize: wrapperspb.Int64(0)}, nil
	}
	used, err := c.store.Used()
	if err != nil {
		return nil, internalOr(err, "sum provisioned bytes")
	}
	free := max(c.capacity-used, 0)
	return &csi.GetCapacityResponse{AvailableCapacity: free, MaximumVolumeSize: wrapperspb.Int64(free)}, nil
}

// ControllerGetVolumeHealth implements csi.ControllerServer.
func (c *ControllerServer) ControllerGetVolumeHealth(_ context.Context, req *csi.ControllerGetVolumeHealthRequest) (*csi.ControllerGetVolumeHealthResponse, error) {
	id := req.GetVolumeId()
	if id == "" {
		return nil, errorf(codes.InvalidArgument, "volume_id is required")
	}
	v, err := c.store.Volume(id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errorf(codes.NotFound, "volume_id %q not found", id)
	} else if err != nil {
		return nil, internalOr(err, "read volume record")
	}
	return &csi.ControllerGetVolumeHealthResponse{VolumeHealth: c.health(v)}, nil
}

// ControllerListVolumeHealth implements csi.ControllerServer.
func (c *ControllerServer) ControllerListVolumeHealth(_ context.Context, req *csi.ControllerListVolumeHealthRequest) (*csi.ControllerListVolumeHealthResponse, error) {
	from, err := pageStart(req.GetStartingToken(), pool.VolumePrefix, req.GetMaxEntries())
	if err != nil {
		return nil, err
	}
	recs, next, err := c.store.Volumes(from, int(req.GetMaxEntries()))
	if err != nil {
		return nil, internalOr(err, "list volume records")
	}
	resp := &csi.ControllerListVolumeHealthResponse{NextToken: next}
	for _, v := range recs {
		resp.Entries = append(resp.Entries, c.health(v))
	}
	return resp, nil
}
