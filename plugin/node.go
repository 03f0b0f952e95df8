package plugin

import (
	"context"
	"fmt"
	"os"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/csi-hub/csi-hub/plugin/transport"
)

// DefaultNodeStateDir is where the node keeps one small record per staged
// volume, so that a restarted plugin still knows which device belongs to which
// volume. It must be a host path (kubelet's pod dir is not enough: the record
// must outlive the plugin container).
const DefaultNodeStateDir = "/var/lib/csi-hub/node"

// NodeConfig configures the node service.
type NodeConfig struct {
	DriverName string
	NodeID     string
	// Topology is what NodeGetInfo reports as accessible topology.
	Topology map[string]string
	// Initiator turns publish contexts into local block devices.
	Initiator transport.Initiator
	// MaxVolumes is NodeGetInfo's max_volumes_per_node (0: no limit).
	MaxVolumes int64
	// StateDir holds the per-volume node records (default DefaultNodeStateDir).
	StateDir string
	// LocalPool, when set, stages a volume whose publish_context is empty from
	// the node's own pool (CSIDriver attachRequired: false; see LocalPool).
	// Nil: an empty publish_context is refused, as with attachRequired: true.
	LocalPool LocalPool
	// Mounter mounts, formats and grows filesystems (nil: NewMounter, the
	// host's; tests inject a fake to reach error paths without root).
	Mounter Mounter
}

// NodeServer implements the CSI Node service: it attaches a volume through the
// transport's initiator, formats a blank device, mounts it at the staging path
// and bind-mounts it into pods (or, for raw block, binds the device node).
type NodeServer struct {
	csi.UnimplementedNodeServer
	cfg      NodeConfig
	records  *nodeRecords
	mounter  Mounter
	inFlight InFlight
}

// NewNodeServer returns the node service.
func NewNodeServer(cfg NodeConfig) (*NodeServer, error) {
	if cfg.NodeID == "" {
		return nil, fmt.Errorf("node service needs a node ID")
	}
	if cfg.Initiator == nil {
		return nil, fmt.Errorf("node service needs a transport initiator")
	}
	if cfg.StateDir == "" {
		cfg.StateDir = DefaultNodeStateDir
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("node state dir: %w", err)
	}
	if cfg.Mounter == nil {
		cfg.Mounter = NewMounter()
	}
	return &NodeServer{
		cfg:     cfg,
		records: &nodeRecords{dir: cfg.StateDir},
		mounter: cfg.Mounter,
	}, nil
}

// NodeGetCapabilities implements csi.NodeServer. CSI 1.13 removed
// VOLUME_CONDITION; its successor GET_VOLUME_HEALTH (NodeGetVolumeHealth)
// reports a volume whose device is gone.
func (n *NodeServer) NodeGetCapabilities(context.Context, *csi.NodeGetCapabilitiesRequest) (*csi.NodeGetCapabilitiesResponse, error) {
	var caps []*csi.NodeServiceCapability
	for _, c := range []csi.NodeServiceCapability_RPC_Type{
		csi.NodeServiceCapability_RPC_STAGE_UNSTAGE_VOLUME,
		csi.NodeServiceCapability_RPC_EXPAND_VOLUME,
		csi.NodeServiceCapability_RPC_GET_VOLUME_STATS,
		csi.NodeServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
		csi.NodeServiceCapability_RPC_GET_VOLUME_HEALTH,
	} {
		caps = append(caps, &csi.NodeServiceCapability{
			Type: &csi.NodeServiceCapability_Rpc{Rpc: &csi.NodeServiceCapability_RPC{Type: c}},
		})
	}
	return &csi.NodeGetCapabilitiesResponse{Capabilities: caps}, nil
}

// NodeGetInfo implements csi.NodeServer.
func (n *NodeServer) NodeGetInfo(context.Context, *csi.NodeGetInfoRequest) (*csi.NodeGetInfoResponse, error) {
	resp := &csi.NodeGetInfoResponse{NodeId: n.cfg.NodeID, MaxVolumesPerNode: n.cfg.MaxVolumes}
	if len(n.cfg.Topology) > 0 {
		segments := make(map[string]string, len(n.cfg.Topology))
		for k, v := range n.cfg.Topology {
			segments[k] = v
		}
		resp.AccessibleTopology = &csi.Topology{Segments: segments}
	}
	return resp, nil
}

// lock takes the per-volume in-flight guard; a second concurrent operation on
// the same volume is answered Aborted so the CO retries.
func (n *NodeServer) lock(volumeID string) (func(), error) {
	release, ok := n.inFlight.Acquire(volumeID)
	if !ok {
		return nil, abortedBusy("volume " + volumeID)
	}
	return release, nil
}
