package fakedriver

import (
	"context"
	"maps"
	"slices"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Publish-context keys returned by ControllerPublishVolume.
const (
	PublishContextDevice = "devicePath"
	PublishContextNode   = "attachedTo"
)

func (s *controllerServer) ControllerPublishVolume(_ context.Context, req *csi.ControllerPublishVolumeRequest) (*csi.ControllerPublishVolumeResponse, error) {
	d := s.d
	if err := d.requireCap(csi.ControllerServiceCapability_RPC_PUBLISH_UNPUBLISH_VOLUME); err != nil {
		return nil, err
	}
	if req.GetVolumeId() == "" {
		return nil, invalid("volume_id is required")
	}
	if req.GetNodeId() == "" {
		return nil, invalid("node_id is required")
	}
	if err := d.validateCapability("volume_capability", req.GetVolumeCapability()); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	v, ok := d.state.Volumes[req.GetVolumeId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "volume_id %q not found", req.GetVolumeId())
	}
	node := req.GetNodeId()
	if !slices.Contains(d.opts.Nodes, node) {
		return nil, status.Errorf(codes.NotFound, "node_id %q not found (known nodes: %q)", node, d.opts.Nodes)
	}
	if a, ok := v.Attachments[node]; ok {
		if a.ReadOnly != req.GetReadonly() {
			return nil, status.Errorf(codes.AlreadyExists, "volume %s is already published to node %s with readonly=%t", v.ID, node, a.ReadOnly)
		}
		return &csi.ControllerPublishVolumeResponse{PublishContext: maps.Clone(a.PublishContext)}, nil
	}
	if mode := req.GetVolumeCapability().GetAccessMode().GetMode(); singleNode(mode) {
		for other := range v.Attachments {
			return nil, status.Errorf(codes.FailedPrecondition, "volume %s is published to node %s and access mode %s allows a single node", v.ID, other, mode)
		}
	}
	if limit := d.opts.MaxVolumesPerNode; limit > 0 && d.attachmentsOnLocked(node) >= limit {
		return nil, status.Errorf(codes.ResourceExhausted, "node %s already has the maximum of %d volumes published", node, limit)
	}
	a := Attachment{
		ReadOnly:       req.GetReadonly(),
		PublishContext: map[string]string{PublishContextDevice: "/dev/fake/" + v.ID, PublishContextNode: node},
	}
	if v.Attachments == nil {
		v.Attachments = map[string]Attachment{}
	}
	v.Attachments[node] = a
	if err := d.saveStatus(); err != nil {
		return nil, err
	}
	return &csi.ControllerPublishVolumeResponse{PublishContext: maps.Clone(a.PublishContext)}, nil
}

func (d *Driver) attachmentsOnLocked(node string) int64 {
	var n int64
	for _, v := range d.state.Volumes {
		if _, ok := v.Attachments[node]; ok {
			n++
		}
	}
	return n
}

func (s *controllerServer) ControllerUnpublishVolume(_ context.Context, req *csi.ControllerUnpublishVolumeRequest) (*csi.ControllerUnpublishVolumeResponse, error) {
	d := s.d
	if err := d.requireCap(csi.ControllerServiceCapability_RPC_PUBLISH_UNPUBLISH_VOLUME); err != nil {
		return nil, err
	}
	if req.GetVolumeId() == "" {
		return nil, invalid("volume_id is required")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	v, ok := d.state.Volumes[req.GetVolumeId()]
	if !ok {
		// A volume that is gone is unpublished everywhere: success, per spec.
		return &csi.ControllerUnpublishVolumeResponse{}, nil
	}
	if req.GetNodeId() == "" { // spec: empty node_id means every node
		v.Attachments = nil
	} else {
		delete(v.Attachments, req.GetNodeId())
	}
	if err := d.saveStatus(); err != nil {
		return nil, err
	}
	return &csi.ControllerUnpublishVolumeResponse{}, nil
}
