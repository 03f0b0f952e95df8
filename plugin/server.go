package plugin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/kubernetes-csi/csi-lib-utils/protosanitizer"
	"google.golang.org/grpc"
	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/internal/steps"
)

// ServerConfig says what one CSI socket serves. Identity is always served;
// Controller and Node only when set (mode controller, node or all).
type ServerConfig struct {
	// Endpoint is unix:///path/to/csi.sock (or a bare path).
	Endpoint   string
	DriverName string
	Controller csi.ControllerServer
	Node       csi.NodeServer
	// Ready backs Probe; nil means always ready.
	Ready func() error
	// Steps, when set, records every call served (the kubelet's node calls
	// included) for a /steps endpoint.
	Steps *steps.Recorder
}

// Server is a running CSI gRPC server.
type Server struct {
	grpc   *grpc.Server
	path   string
	served chan error
}

// Serve listens on cfg.Endpoint (removing a stale socket left by a previous
// run) and serves in the background until Stop. Tests use it to run the driver
// in-process on a socket in t.TempDir(); see plugin/plugintest for a helper
// that also builds a controller on a temporary pool.
func Serve(cfg ServerConfig) (*Server, error) {
	path, err := socketPath(cfg.Endpoint)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	interceptors := []grpc.UnaryServerInterceptor{logCalls}
	if cfg.Steps != nil {
		interceptors = append(interceptors, cfg.Steps.UnaryServerInterceptor())
	}
	g := grpc.NewServer(grpc.ChainUnaryInterceptor(interceptors...))
	group, _ := cfg.Controller.(csi.GroupControllerServer)
	identity := NewIdentityServer(cfg.DriverName, cfg.Controller != nil, cfg.Ready)
	identity.groupController = group != nil
	csi.RegisterIdentityServer(g, identity)
	if cfg.Controller != nil {
		csi.RegisterControllerServer(g, cfg.Controller)
	}
	if group != nil {
		csi.RegisterGroupControllerServer(g, group)
	}
	if cfg.Node != nil {
		csi.RegisterNodeServer(g, cfg.Node)
	}
	s := &Server{grpc: g, path: path, served: make(chan error, 1)}
	go func() { s.served <- g.Serve(lis) }()
	klog.InfoS("CSI server listening", "endpoint", path, "controller", cfg.Controller != nil, "node", cfg.Node != nil)
	return s, nil
}

// Done delivers the error that ended serving (nil after Stop).
func (s *Server) Done() <-chan error { return s.served }

// Stop ends serving, letting running calls finish, and removes the socket.
func (s *Server) Stop() {
	s.grpc.GracefulStop()
	os.Remove(s.path)
}

// socketPath accepts unix:///abs/path, unix://rel or a plain path.
func socketPath(endpoint string) (string, error) {
	if endpoint == "" {
		return "", fmt.Errorf("endpoint is empty")
	}
	if !strings.Contains(endpoint, "://") {
		return endpoint, nil
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return "", fmt.Errorf("endpoint %q: %w", endpoint, err)
	}
	if u.Scheme != "unix" {
		return "", fmt.Errorf("endpoint %q: only unix:// sockets are supported", endpoint)
	}
	path := u.Host + u.Path
	if path == "" {
		return "", fmt.Errorf("endpoint %q has no path", endpoint)
	}
	return path, nil
}

// logCalls logs every call at -v=5 with secrets stripped, and failures at -v=2.
func logCalls(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	klog.V(5).InfoS("CSI call", "method", info.FullMethod, "request", protosanitizer.StripSecrets(req))
	resp, err := handler(ctx, req)
	if err != nil {
		klog.V(2).InfoS("CSI call failed", "method", info.FullMethod, "err", err)
	} else {
		klog.V(5).InfoS("CSI call done", "method", info.FullMethod, "response", protosanitizer.StripSecrets(resp))
	}
	return resp, err
}
