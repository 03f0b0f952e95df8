package csiconn

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/kubernetes-csi/csi-lib-utils/rpc"
	"google.golang.org/grpc"
)

// Capabilities is what the driver supports, read once at connect time.
type Capabilities struct {
	Plugin     rpc.PluginCapabilitySet
	Controller rpc.ControllerCapabilitySet
}

// Has reports a controller capability.
func (c Capabilities) Has(cap csi.ControllerServiceCapability_RPC_Type) bool {
	return c.Controller[cap]
}

// ControllerService reports whether the driver runs a controller service at all.
func (c Capabilities) ControllerService() bool {
	return c.Plugin[csi.PluginCapability_Service_CONTROLLER_SERVICE]
}

// Topology reports VOLUME_ACCESSIBILITY_CONSTRAINTS.
func (c Capabilities) Topology() bool {
	return c.Plugin[csi.PluginCapability_Service_VOLUME_ACCESSIBILITY_CONSTRAINTS]
}

func (c Capabilities) String() string {
	var names []string
	for p, ok := range c.Plugin {
		if ok {
			names = append(names, p.String())
		}
	}
	for p, ok := range c.Controller {
		if ok {
			names = append(names, p.String())
		}
	}
	sort.Strings(names)
	return strings.Join(names, ",")
}

// GetCapabilities asks the driver for its plugin and (if it has a controller
// service) controller capabilities.
func GetCapabilities(ctx context.Context, cc *grpc.ClientConn, timeout time.Duration) (Capabilities, error) {
	var caps Capabilities
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	plugin, err := rpc.GetPluginCapabilities(cctx, cc)
	if err != nil {
		return caps, fmt.Errorf("GetPluginCapabilities: %w", err)
	}
	caps.Plugin = plugin
	caps.Controller = rpc.ControllerCapabilitySet{}
	if caps.ControllerService() {
		ctrl, err := rpc.GetControllerCapabilities(cctx, cc)
		if err != nil {
			return caps, fmt.Errorf("ControllerGetCapabilities: %w", err)
		}
		caps.Controller = ctrl
	}
	return caps, nil
}
