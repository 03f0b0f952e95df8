package plugin

import (
	"context"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Version is the driver version GetPluginInfo reports; set with -ldflags -X.
var Version = "dev"

// IdentityServer implements the CSI Identity service.
type IdentityServer struct {
	csi.UnimplementedIdentityServer
	driverName string
	controller bool
	// groupController: the GroupController service is served too.
	groupController bool
	// ready reports whether the services behind the socket can serve; nil: always.
	ready func() error
}

// NewIdentityServer returns the identity service; controller tells whether the
// Controller service is served next to it.
func NewIdentityServer(driverName string, controller bool, ready func() error) *IdentityServer {
	return &IdentityServer{driverName: driverName, controller: controller, ready: ready}
}

// GetPluginInfo implements csi.IdentityServer.
func (s *IdentityServer) GetPluginInfo(context.Context, *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	if s.driverName == "" {
		return nil, errorf(codes.Unavailable, "driver name is not configured")
	}
	return &csi.GetPluginInfoResponse{Name: s.driverName, VendorVersion: Version}, nil
}

// GetPluginCapabilities implements csi.IdentityServer.
func (s *IdentityServer) GetPluginCapabilities(context.Context, *csi.GetPluginCapabilitiesRequest) (*csi.GetPluginCapabilitiesResponse, error) {
	svc := func(t csi.PluginCapability_Service_Type) *csi.PluginCapability {
		return &csi.PluginCapability{Type: &csi.PluginCapability_Service_{Service: &csi.PluginCapability_Service{Type: t}}}
	}
	caps := []*csi.PluginCapability{
		svc(csi.PluginCapability_Service_VOLUME_ACCESSIBILITY_CONSTRAINTS),
		{Type: &csi.PluginCapability_VolumeExpansion_{VolumeExpansion: &csi.PluginCapability_VolumeExpansion{
			Type: csi.PluginCapability_VolumeExpansion_ONLINE}}},
	}
	if s.controller {
		caps = append(caps, svc(csi.PluginCapability_Service_CONTROLLER_SERVICE))
	}
	if s.groupController {
		caps = append(caps, svc(csi.PluginCapability_Service_GROUP_CONTROLLER_SERVICE))
	}
	return &csi.GetPluginCapabilitiesResponse{Capabilities: caps}, nil
}

// Probe implements csi.IdentityServer.
func (s *IdentityServer) Probe(context.Context, *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	if s.ready != nil {
		if err := s.ready(); err != nil {
			return nil, errorf(codes.FailedPrecondition, "not ready: %v", err)
		}
	}
	return &csi.ProbeResponse{Ready: wrapperspb.Bool(true)}, nil
}
