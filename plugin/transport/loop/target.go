// Package loop is the transport for a node that shares the pool directory with
// the storage host: the node attaches the backing file as a loop device.
package loop

import (
	"context"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/csi-hub/csi-hub/plugin/transport"
)

// Name is the transport name in the publish context.
const Name = "loop"

// KeyBackingFile is the publish-context key holding the absolute path of the
// volume's backing file, which the node attaches with losetup.
const KeyBackingFile = "loop.backingFile"

// TargetConfig configures the loop target.
type TargetConfig struct {
	// NodeID is the storage host's node, the only node that can reach the pool.
	NodeID string
	// TopologyKey is the segment key pinning volumes to NodeID
	// (plugin.TopologyNodeKey(driverName); passed in to keep this package free
	// of a dependency on plugin).
	TopologyKey string
}

// Target is the storage-host side of the loop transport. Nothing needs to be
// exported: the node opens the file itself, so Export and friends only check.
type Target struct {
	cfg TargetConfig
}

var _ transport.Target = (*Target)(nil)

// NewTarget returns the loop target.
func NewTarget(cfg TargetConfig) (*Target, error) {
	if cfg.NodeID == "" || cfg.TopologyKey == "" {
		return nil, fmt.Errorf("loop target needs a node ID and a topology key")
	}
	return &Target{cfg: cfg}, nil
}

// Name implements transport.Target.
func (t *Target) Name() string { return Name }

// Export implements transport.Target; a loop volume needs no export.
func (t *Target) Export(context.Context, transport.Volume) error { return nil }

// Unexport implements transport.Target.
func (t *Target) Unexport(context.Context, transport.Volume) error { return nil }

// Publish implements transport.Target. Only the storage host's own node shares
// the pool, so any other node is answered NotFound, as CSI asks for an unknown node.
func (t *Target) Publish(_ context.Context, vol transport.Volume, nodeID string) (map[string]string, error) {
	if nodeID != t.cfg.NodeID {
		return nil, status.Errorf(codes.NotFound,
			"node_id %q not found: the loop transport reaches only node %q", nodeID, t.cfg.NodeID)
	}
	return map[string]string{
		transport.KeyTransport: Name,
		transport.KeyVolumeID:  vol.ID,
		KeyBackingFile:         vol.BackingFile,
	}, nil
}

// Unpublish implements transport.Target; nothing was granted.
func (t *Target) Unpublish(context.Context, transport.Volume, string) error { return nil }

// Resized implements transport.Target; the node rescans the loop device itself.
func (t *Target) Resized(context.Context, transport.Volume) error { return nil }

// AccessibleTopology implements transport.Target.
func (t *Target) AccessibleTopology() map[string]string {
	return map[string]string{t.cfg.TopologyKey: t.cfg.NodeID}
}
