package testutil

import (
	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/kubernetes-csi/csi-lib-utils/rpc"

	"github.com/csi-hub/csi-hub/internal/csiconn"
)

// ControllerCaps is a driver's capabilities with exactly these controller
// capabilities (and no plugin capability).
func ControllerCaps(c ...csi.ControllerServiceCapability_RPC_Type) csiconn.Capabilities {
	set := rpc.ControllerCapabilitySet{}
	for _, x := range c {
		set[x] = true
	}
	return csiconn.Capabilities{Controller: set}
}
