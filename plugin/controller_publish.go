package plugin

import (
	"context"
	"errors"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/plugin/store"
)

// ControllerPublishVolume implements csi.ControllerServer: it asks the
// transport to grant the node access, records the attachment and returns the
// transport's publish context.
func (c *ControllerServer) ControllerPublishVolume(ctx context.Context, req *csi.ControllerPublishVolumeRequest) (*csi.ControllerPublishVolumeResponse, error) {
	id, nodeID := req.GetVolumeId(), req.GetNodeId()
	if id == "" {
		return nil, errorf(codes.InvalidArgument, "volume_id is required")
	}
	if nodeID == "" {
		return nil, errorf(codes.InvalidArgument, "node_id is required")
	}
	vc, err := checkCapability("volume_capability", req.GetVolumeCapability())
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
	if err := compatibleCapability(rec, vc); err != nil {
		return nil, err
	}
	if att, ok := rec.Attachments[nodeID]; ok && att.ReadOnly != req.GetReadonly() {
		return nil, errorf(codes.AlreadyExists, "volume_id %s is already published to node_id %s with readonly=%t", id, nodeID, att.ReadOnly)
	}
	for other := range rec.Attachments {
		if other != nodeID {
			return nil, errorf(codes.FailedPrecondition,
				"volume_id %s is already published to node %s and its access mode allows a single node", id, other)
		}
	}
	pc, err := c.target.Publish(ctx, c.transportVolume(rec), nodeID)
	if err != nil {
		return nil, internalOr(err, "publish "+id)
	}
	if _, ok := rec.Attachments[nodeID]; !ok {
		if rec.Attachments == nil {
			rec.Attachments = map[string]store.Attachment{}
		}
		rec.Attachments[nodeID] = store.Attachment{ReadOnly: req.GetReadonly()}
		if err := c.store.UpdateVolume(rec); err != nil {
			return nil, internalOr(err, "record attachment")
		}
		klog.InfoS("Volume published", "volume", id, "node", nodeID, "readonly", req.GetReadonly())
	}
	return &csi.ControllerPublishVolumeResponse{PublishContext: pc}, nil
}

// compatibleCapability refuses an access type the volume was not created for.
func compatibleCapability(rec *store.Volume, vc store.Capability) error {
	if len(rec.Capabilities) == 0 {
		return nil
	}
	for _, have := range rec.Capabilities {
		if have.Block == vc.Block {
			return nil
		}
	}
	want := "mount"
	if vc.Block {
		want = "block"
	}
	return errorf(codes.InvalidArgument, "volume_capability: volume %s was not created for %s access", rec.ID, want)
}

// ControllerUnpublishVolume implements csi.ControllerServer. Without node_id it
// unpublishes from every node; an unknown volume or node is success.
func (c *ControllerServer) ControllerUnpublishVolume(ctx context.Context, req *csi.ControllerUnpublishVolumeRequest) (*csi.ControllerUnpublishVolumeResponse, error) {
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
		return &csi.ControllerUnpublishVolumeResponse{}, nil
	} else if err != nil {
		return nil, internalOr(err, "read volume record")
	}
	nodes := rec.AttachedNodes()
	if n := req.GetNodeId(); n != "" {
		nodes = []string{n}
	}
	for _, n := range nodes {
		if err := c.target.Unpublish(ctx, c.transportVolume(rec), n); err != nil {
			return nil, internalOr(err, "unpublish "+id)
		}
		if _, ok := rec.Attachments[n]; !ok {
			continue
		}
		delete(rec.Attachments, n)
		if err := c.store.UpdateVolume(rec); err != nil {
			return nil, internalOr(err, "record detachment")
		}
		klog.InfoS("Volume unpublished", "volume", id, "node", n)
	}
	return &csi.ControllerUnpublishVolumeResponse{}, nil
}
