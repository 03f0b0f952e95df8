package fakedriver

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// nodeServer is a minimal node service: it checks requests like a real node
// plugin and records staging and target paths, but mounts nothing.
type nodeServer struct {
	csi.UnimplementedNodeServer
	d *Driver
}

func (s *nodeServer) NodeGetInfo(context.Context, *csi.NodeGetInfoRequest) (*csi.NodeGetInfoResponse, error) {
	o := s.d.opts
	resp := &csi.NodeGetInfoResponse{NodeId: o.NodeID, MaxVolumesPerNode: o.MaxVolumesPerNode}
	if o.Topology {
		resp.AccessibleTopology = &csi.Topology{Segments: map[string]string{o.TopologyKey: o.NodeZone}}
	}
	return resp, nil
}

func (s *nodeServer) NodeGetCapabilities(context.Context, *csi.NodeGetCapabilitiesRequest) (*csi.NodeGetCapabilitiesResponse, error) {
	types := []csi.NodeServiceCapability_RPC_Type{csi.NodeServiceCapability_RPC_STAGE_UNSTAGE_VOLUME}
	if s.d.opts.NodeExpansionRequired {
		types = append(types, csi.NodeServiceCapability_RPC_EXPAND_VOLUME)
	}
	if s.d.controllerOn[csi.ControllerServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER] {
		types = append(types, csi.NodeServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER)
	}
	resp := &csi.NodeGetCapabilitiesResponse{}
	for _, t := range types {
		resp.Capabilities = append(resp.Capabilities, &csi.NodeServiceCapability{
			Type: &csi.NodeServiceCapability_Rpc{Rpc: &csi.NodeServiceCapability_RPC{Type: t}},
		})
	}
	return resp, nil
}

// nodeVolumeLocked finds the volume a node call is about and, when attach is
// on, checks that the controller really published it to this node: a caller
// that skipped ControllerPublishVolume must not get a working volume.
func (d *Driver) nodeVolumeLocked(id string) (*Volume, error) {
	v, ok := d.state.Volumes[id]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "volume_id %q not found", id)
	}
	if d.controllerOn[csi.ControllerServiceCapability_RPC_PUBLISH_UNPUBLISH_VOLUME] {
		if _, ok := v.Attachments[d.opts.NodeID]; !ok {
			return nil, status.Errorf(codes.FailedPrecondition, "volume %s is not published to node %s", id, d.opts.NodeID)
		}
	}
	return v, nil
}

func (s *nodeServer) NodeStageVolume(_ context.Context, req *csi.NodeStageVolumeRequest) (*csi.NodeStageVolumeResponse, error) {
	d := s.d
	switch {
	case req.GetVolumeId() == "":
		return nil, invalid("volume_id is required")
	case req.GetStagingTargetPath() == "":
		return nil, invalid("staging_target_path is required")
	}
	if err := d.validateCapability("volume_capability", req.GetVolumeCapability()); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	v, err := d.nodeVolumeLocked(req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	if v.StagingPath != "" && v.StagingPath != req.GetStagingTargetPath() {
		return nil, status.Errorf(codes.FailedPrecondition, "volume %s is already staged at %s", v.ID, v.StagingPath)
	}
	v.StagingPath = req.GetStagingTargetPath()
	return &csi.NodeStageVolumeResponse{}, d.saveStatus()
}

func (s *nodeServer) NodeUnstageVolume(_ context.Context, req *csi.NodeUnstageVolumeRequest) (*csi.NodeUnstageVolumeResponse, error) {
	d := s.d
	switch {
	case req.GetVolumeId() == "":
		return nil, invalid("volume_id is required")
	case req.GetStagingTargetPath() == "":
		return nil, invalid("staging_target_path is required")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if v, ok := d.state.Volumes[req.GetVolumeId()]; ok && v.StagingPath == req.GetStagingTargetPath() {
		if len(v.TargetPaths) > 0 {
			return nil, status.Errorf(codes.FailedPrecondition, "volume %s is still published at %q", v.ID, v.TargetPaths)
		}
		v.StagingPath = ""
	}
	return &csi.NodeUnstageVolumeResponse{}, d.saveStatus()
}

func (s *nodeServer) NodePublishVolume(_ context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	d := s.d
	switch {
	case req.GetVolumeId() == "":
		return nil, invalid("volume_id is required")
	case req.GetTargetPath() == "":
		return nil, invalid("target_path is required")
	case req.GetStagingTargetPath() == "":
		return nil, invalid("staging_target_path is required (the node has STAGE_UNSTAGE_VOLUME)")
	}
	if err := d.validateCapability("volume_capability", req.GetVolumeCapability()); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	v, err := d.nodeVolumeLocked(req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	if v.StagingPath != req.GetStagingTargetPath() {
		return nil, status.Errorf(codes.FailedPrecondition, "volume %s is not staged at %s", v.ID, req.GetStagingTargetPath())
	}
	if req.GetVolumeCapability().GetAccessMode().GetMode() == csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER {
		for _, p := range v.TargetPaths {
			if p != req.GetTargetPath() {
				return nil, status.Errorf(codes.FailedPrecondition, "volume %s is SINGLE_NODE_SINGLE_WRITER and already published at %s", v.ID, p)
			}
		}
	}
	if d.opts.CreateTargetPaths {
		if err := createTarget(req.GetTargetPath(), req.GetVolumeCapability().GetBlock() != nil); err != nil {
			return nil, status.Errorf(codes.Internal, "creating target_path: %v", err)
		}
	}
	if !slices.Contains(v.TargetPaths, req.GetTargetPath()) {
		v.TargetPaths = append(v.TargetPaths, req.GetTargetPath())
	}
	return &csi.NodePublishVolumeResponse{}, d.saveStatus()
}

func createTarget(path string, block bool) error {
	if !block {
		return os.MkdirAll(path, 0o750)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE, 0o640)
	if err != nil {
		return err
	}
	return f.Close()
}

func (s *nodeServer) NodeUnpublishVolume(_ context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	d := s.d
	switch {
	case req.GetVolumeId() == "":
		return nil, invalid("volume_id is required")
	case req.GetTargetPath() == "":
		return nil, invalid("target_path is required")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if v, ok := d.state.Volumes[req.GetVolumeId()]; ok {
		v.TargetPaths = slices.DeleteFunc(v.TargetPaths, func(p string) bool { return p == req.GetTargetPath() })
	}
	if d.opts.CreateTargetPaths {
		if err := os.Remove(req.GetTargetPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, status.Errorf(codes.Internal, "removing target_path: %v", err)
		}
	}
	return &csi.NodeUnpublishVolumeResponse{}, d.saveStatus()
}

func (s *nodeServer) NodeExpandVolume(_ context.Context, req *csi.NodeExpandVolumeRequest) (*csi.NodeExpandVolumeResponse, error) {
	d := s.d
	if !d.opts.NodeExpansionRequired {
		return nil, status.Errorf(codes.Unimplemented, "node expansion is not enabled on driver %s", d.opts.Name)
	}
	switch {
	case req.GetVolumeId() == "":
		return nil, invalid("volume_id is required")
	case req.GetVolumePath() == "":
		return nil, invalid("volume_path is required")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	v, ok := d.state.Volumes[req.GetVolumeId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "volume_id %q not found", req.GetVolumeId())
	}
	return &csi.NodeExpandVolumeResponse{CapacityBytes: v.CapacityBytes}, nil
}

// saveStatus persists the state and maps a failure to a gRPC status.
func (d *Driver) saveStatus() error {
	if err := d.saveLocked(); err != nil {
		return status.Error(codes.Internal, err.Error())
	}
	return nil
}
