// Package registrar is csi-hub's node mode: node-driver-registrar's job (tell the
// kubelet, through its plugin registration socket, where the CSI driver listens)
// and the livenessprobe's (/healthz runs the driver's Probe).
package registrar

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"k8s.io/klog/v2"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

// SupportedVersions are the CSI versions announced to the kubelet.
var SupportedVersions = []string{"1.0.0"}

// Config configures the registration service.
type Config struct {
	// DriverName is the name GetPluginInfo returned.
	DriverName string
	// KubeletRegistrationPath is the driver socket's path on the host, as the kubelet sees it.
	KubeletRegistrationPath string
	// RegistrationDir is where the kubelet looks for registration sockets, as this
	// process sees it (the host's /var/lib/kubelet/plugins_registry mounted at /registration).
	RegistrationDir string
	// CheckInterval is how often the socket's presence is checked.
	CheckInterval time.Duration
	// StatusPath, when set, is written once the kubelet reports the driver
	// registered and removed at start: what --mode=kubelet-registration-probe checks.
	StatusPath string
	// OnRegistrationFailure is called when the kubelet reports a failed registration.
	// Default: exit non-zero so the pod restarts and registration is tried afresh.
	OnRegistrationFailure func(err error)
}

// SocketPath is where the registration socket lives: <dir>/<driver>-reg.sock.
func (c Config) SocketPath() string {
	return filepath.Join(c.RegistrationDir, c.DriverName+"-reg.sock")
}

func (c Config) validate() error {
	switch {
	case c.DriverName == "":
		return errors.New("driver name is empty")
	case c.KubeletRegistrationPath == "":
		return errors.New("--kubelet-registration-path is required: the driver socket's path on the host")
	case !filepath.IsAbs(c.KubeletRegistrationPath):
		return fmt.Errorf("--kubelet-registration-path %q must be absolute", c.KubeletRegistrationPath)
	case c.RegistrationDir == "":
		return errors.New("--plugin-registration-path is empty")
	}
	return nil
}

type server struct {
	registerapi.UnimplementedRegistrationServer
	cfg Config
}

func (s *server) GetInfo(ctx context.Context, _ *registerapi.InfoRequest) (*registerapi.PluginInfo, error) {
	klog.V(2).InfoS("Kubelet asked for plugin info", "driver", s.cfg.DriverName)
	return &registerapi.PluginInfo{
		Type:              registerapi.CSIPlugin,
		Name:              s.cfg.DriverName,
		Endpoint:          s.cfg.KubeletRegistrationPath,
		SupportedVersions: SupportedVersions,
	}, nil
}

func (s *server) NotifyRegistrationStatus(ctx context.Context, st *registerapi.RegistrationStatus) (*registerapi.RegistrationStatusResponse, error) {
	if !st.PluginRegistered {
		err := fmt.Errorf("kubelet failed to register driver %s: %s", s.cfg.DriverName, st.Error)
		klog.ErrorS(err, "Registration failed; exiting so the pod restarts")
		s.cfg.OnRegistrationFailure(err)
		return &registerapi.RegistrationStatusResponse{}, nil
	}
	klog.InfoS("Kubelet registered the driver", "driver", s.cfg.DriverName, "endpoint", s.cfg.KubeletRegistrationPath)
	if err := s.cfg.writeStatus(); err != nil {
		klog.ErrorS(err, "Could not record the registration for --mode=kubelet-registration-probe", "path", s.cfg.StatusPath)
	}
	return &registerapi.RegistrationStatusResponse{}, nil
}

// Run serves the registration socket until ctx ends. When the socket file
// disappears (the kubelet's directory was wiped, e.g. by a kubelet reset), it
// is created again so the kubelet registers the driver anew.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	if cfg.CheckInterval == 0 {
		cfg.CheckInterval = 5 * time.Second
	}
	if cfg.OnRegistrationFailure == nil {
		cfg.OnRegistrationFailure = func(error) { klog.FlushAndExit(klog.ExitFlushTimeout, 1) }
	}
	if cfg.StatusPath != "" {
		// A status left by an earlier run must not vouch for this one.
		if err := os.Remove(cfg.StatusPath); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("removing stale registration status %s: %w", cfg.StatusPath, err)
		}
	}
	srv := &server{cfg: cfg}
	for {
		ino, stop, err := serve(srv)
		if err != nil {
			return err
		}
		gone := waitForSocketGone(ctx, cfg.SocketPath(), ino, cfg.CheckInterval)
		stop()
		if !gone {
			_ = os.Remove(cfg.SocketPath())
			return nil
		}
		klog.InfoS("Registration socket disappeared; creating it again", "path", cfg.SocketPath())
	}
}

// serve listens on a fresh socket and returns its inode, so a socket replaced by
// someone else is noticed too.
func serve(srv *server) (ino uint64, stop func(), err error) {
	path := srv.cfg.SocketPath()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return 0, nil, err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return 0, nil, fmt.Errorf("removing stale registration socket: %w", err)
	}
	// Only this user may connect to the socket, as node-driver-registrar
	// creates it (umask 0077 while listening; umask is process-wide).
	old := syscall.Umask(0o077)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return 0, nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	ino = inode(path)
	g := grpc.NewServer()
	registerapi.RegisterRegistrationServer(g, srv)
	go func() { _ = g.Serve(ln) }()
	klog.InfoS("Serving kubelet plugin registration", "path", path, "driver", srv.cfg.DriverName)
	return ino, g.Stop, nil
}

func waitForSocketGone(ctx context.Context, path string, ino uint64, every time.Duration) bool {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			if inode(path) != ino {
				return true
			}
		}
	}
}

func inode(path string) uint64 {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0
	}
	return st.Ino
}

// Healthy reports whether the registration socket is in place (for /healthz).
func (c Config) Healthy() error {
	if _, err := os.Stat(c.SocketPath()); err != nil {
		return fmt.Errorf("registration socket: %w", err)
	}
	return nil
}

func (c Config) writeStatus() error {
	if c.StatusPath == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(c.StatusPath), 0o755); err != nil {
		return err
	}
	return os.WriteFile(c.StatusPath, []byte(c.DriverName+"\n"), 0o644)
}

// StatusPath is where node mode records a successful registration for
// --mode=kubelet-registration-probe: beside the driver socket's host path, as
// node-driver-registrar releases with that mode's check kept it.
func StatusPath(kubeletRegistrationPath string) string {
	return filepath.Join(filepath.Dir(kubeletRegistrationPath), "registration")
}

// Registered is the probe: nil when the kubelet has registered the driver.
func Registered(kubeletRegistrationPath string) error {
	if kubeletRegistrationPath == "" {
		return errors.New("--kubelet-registration-path is required")
	}
	path := StatusPath(kubeletRegistrationPath)
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("kubelet plugin registration has not succeeded yet: %w", err)
	}
	return nil
}
