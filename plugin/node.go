package plugin

import (
	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/csi-hub/csi-hub/plugin/transport"
)

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
}

// NodeServer implements the CSI Node service (stub: being written).
type NodeServer struct {
	csi.UnimplementedNodeServer
	cfg NodeConfig
}

// NewNodeServer returns the node service.
func NewNodeServer(cfg NodeConfig) (*NodeServer, error) {
	return &NodeServer{cfg: cfg}, nil
}
