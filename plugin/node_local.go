package plugin

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/csi-hub/csi-hub/plugin/store"
)

// LocalPool finds a volume in the node's own pool. It serves a node-local
// setup (csi-hub --node-deployment with one loop pool per node), where the
// CSIDriver has attachRequired: false, so there is no VolumeAttachment and no
// ControllerPublishVolume and the kubelet calls NodeStageVolume with an empty
// publish_context, as for TopoLVM, local-path or csi-driver-host-path's
// node-local mode.
type LocalPool interface {
	// LocalPublishContext returns the publish context ControllerPublishVolume
	// would have returned for this node, or a gRPC NotFound naming the volume
	// and the node when the volume is not in this node's pool.
	LocalPublishContext(ctx context.Context, volumeID string) (map[string]string, error)
}

var _ LocalPool = (*ControllerServer)(nil)

// LocalPublishContext implements LocalPool on the controller service of the
// same process (csi-hub-plugin --mode=all --node-local-pool): the volume must
// be recorded in this pool and ready, and its backing file there. Nothing is
// recorded as an attachment: with attachRequired: false nothing would ever
// unpublish it.
func (c *ControllerServer) LocalPublishContext(ctx context.Context, volumeID string) (map[string]string, error) {
	rec, err := c.store.Volume(volumeID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errorf(codes.NotFound, "volume %s is not in the pool of node %s (%s): a node-local volume is staged only on the node that created it",
			volumeID, c.cfg.NodeID, c.pool.Dir())
	} else if err != nil {
		return nil, internalOr(err, "read volume record")
	}
	if rec.State != store.StateReady {
		return nil, errorf(codes.FailedPrecondition, "volume %s in the pool of node %s is %s", volumeID, c.cfg.NodeID, rec.State)
	}
	if _, err := c.pool.Size(volumeID); err != nil {
		return nil, errorf(codes.NotFound, "volume %s: its backing file is missing from the pool of node %s: %v", volumeID, c.cfg.NodeID, err)
	}
	pc, err := c.target.Publish(ctx, c.transportVolume(rec), c.cfg.NodeID)
	if err != nil {
		if st, ok := status.FromError(err); ok {
			return nil, errorf(st.Code(), "volume %s on node %s: %s", volumeID, c.cfg.NodeID, st.Message())
		}
		return nil, internalOr(err, "volume "+volumeID+" on node "+c.cfg.NodeID)
	}
	return pc, nil
}

// stagePublishContext is the publish context NodeStageVolume stages with: the
// one the CO passed (ControllerPublishVolume's, attachRequired: true), or, when
// it is empty and the node serves its own pool, the volume's in that pool.
func (n *NodeServer) stagePublishContext(ctx context.Context, volumeID string, pc map[string]string) (map[string]string, error) {
	if len(pc) > 0 {
		return pc, nil
	}
	if n.cfg.LocalPool == nil {
		return nil, errorf(codes.InvalidArgument,
			"publish_context is required (ControllerPublishVolume returns it); node %s serves no node-local pool (csi-hub-plugin --node-local-pool)", n.cfg.NodeID)
	}
	return n.cfg.LocalPool.LocalPublishContext(ctx, volumeID)
}
