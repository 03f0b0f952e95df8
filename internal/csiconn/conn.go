// Package csiconn is csi-hub's single gRPC connection to the CSI driver. Every
// controller shares it, so there is one set of CSI metrics, one logging
// interceptor and one reconnect behaviour for the whole process.
package csiconn

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/kubernetes-csi/csi-lib-utils/connection"
	"github.com/kubernetes-csi/csi-lib-utils/metrics"
	"github.com/kubernetes-csi/csi-lib-utils/rpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	csitrans "k8s.io/csi-translation-lib"
	"k8s.io/klog/v2"
)

// Conn is the connection to the driver plus what the driver said about itself.
type Conn struct {
	*grpc.ClientConn
	DriverName string
	Caps       Capabilities
	Metrics    metrics.CSIMetricsManager
}

// Options tune Connect.
type Options struct {
	// Metrics records csi_sidecar_operations_seconds; created when nil.
	Metrics metrics.CSIMetricsManager
	// Interceptors run after logging and metrics (e.g. the step recorder).
	Interceptors []grpc.UnaryClientInterceptor
	// CallTimeout bounds each of the identity calls made while connecting.
	CallTimeout time.Duration
	// MigratedLabel: when the driver is a CSI migration target (a name
	// csi-translation-lib knows, e.g. ebs.csi.aws.com),
	// csi_sidecar_operations_seconds gets the "migrated" label, "true" for
	// calls made with a context from MarkMigrated(ctx, true), "false" for the
	// others, as external-provisioner, -attacher and -resizer record it
	// (csi-lib-utils' metrics.WithMigration). Only for a Metrics created here.
	MigratedLabel bool
	// HungDriverFails: a driver that accepts the connection but does not
	// answer GetPluginInfo within CallTimeout is an error, as in
	// node-driver-registrar (its --timeout), instead of a reason to keep
	// waiting. A socket that is not there yet is still waited for.
	HungDriverFails bool
}

// Connect dials address (a path or unix:// URL) and waits, with backoff, until
// the driver answers GetPluginInfo and its Probe says ready. gRPC re-dials by
// itself after a driver restart; calls made meanwhile fail with Unavailable and
// the controllers' workqueues retry them, so no queued work is lost.
func Connect(ctx context.Context, address string, opts Options) (*Conn, error) {
	ownMetrics := opts.Metrics == nil
	if ownMetrics {
		opts.Metrics = newMetrics("")
	}
	if opts.CallTimeout == 0 {
		opts.CallTimeout = 10 * time.Second
	}
	path := strings.TrimPrefix(address, "unix://")
	if !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("--csi-address %q: must be an absolute socket path or unix:// URL", address)
	}
	bc := backoff.DefaultConfig
	bc.MaxDelay = time.Second
	rec := &recorder{}
	rec.set(opts.Metrics)
	interceptors := append([]grpc.UnaryClientInterceptor{connection.LogGRPC, rec.intercept}, opts.Interceptors...)
	cc, err := grpc.NewClient("passthrough:///"+path,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bc}),
		grpc.WithIdleTimeout(0),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}),
		grpc.WithChainUnaryInterceptor(interceptors...))
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", address, err)
	}
	c := &Conn{ClientConn: cc, Metrics: opts.Metrics}

	// The socket may not exist yet (the driver container starts in parallel):
	// wait with exponential backoff up to 5s between attempts, logging now and
	// then, until it answers or ctx ends, as the sidecars wait. (A
	// wait.Backoff with a Cap stops after the step that reaches the cap.)
	delay := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, opts.CallTimeout)
		name, err := rpc.GetDriverName(cctx, cc)
		cancel()
		if err == nil {
			c.DriverName = name
			break
		}
		if opts.HungDriverFails && ctx.Err() == nil && status.Code(err) == codes.DeadlineExceeded {
			cc.Close()
			return nil, fmt.Errorf("waiting for the CSI driver at %s: the driver accepted the connection but did not answer GetPluginInfo within %v (--timeout): %w",
				address, opts.CallTimeout, err)
		}
		if attempt == 1 || attempt%10 == 0 {
			klog.InfoS("Waiting for the CSI driver", "address", address, "attempt", attempt, "err", err)
		}
		select {
		case <-ctx.Done():
			cc.Close()
			return nil, fmt.Errorf("waiting for the CSI driver at %s: %w (last error: %v)", address, ctx.Err(), err)
		case <-time.After(delay):
		}
		delay = min(2*delay, 5*time.Second)
	}
	opts.Metrics.SetDriverName(c.DriverName)
	if ownMetrics && opts.MigratedLabel && csitrans.New().IsMigratedCSIDriverByName(c.DriverName) {
		// As external-provisioner: a new manager with the label, from now
		// on (the identity calls so far are not in it either).
		c.Metrics = newMetrics(c.DriverName, metrics.WithMigration())
		rec.set(c.Metrics)
	}
	if err := rpc.ProbeForever(ctx, cc, opts.CallTimeout); err != nil {
		cc.Close()
		return nil, err
	}
	if c.Caps, err = GetCapabilities(ctx, cc, opts.CallTimeout); err != nil {
		cc.Close()
		return nil, err
	}
	klog.InfoS("Connected to the CSI driver", "driver", c.DriverName, "address", address, "capabilities", c.Caps.String())
	return c, nil
}

// newMetrics is csi_sidecar_operations_seconds as external-provisioner
// makes it: the process start time comes from the legacy registry's process
// collector, served alongside.
func newMetrics(driver string, more ...metrics.MetricsManagerOption) metrics.CSIMetricsManager {
	return metrics.NewCSIMetricsManagerWithOptions(driver, append([]metrics.MetricsManagerOption{
		metrics.WithProcessStartTime(false), metrics.WithSubsystem(metrics.SubsystemSidecar)}, more...)...)
}

// recorder is the metrics interceptor; its manager is replaced once the
// driver's name says whether the migrated label exists.
type recorder struct {
	m atomic.Pointer[metrics.CSIMetricsManager]
}

func (r *recorder) set(m metrics.CSIMetricsManager) { r.m.Store(&m) }

func (r *recorder) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn,
	invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	return connection.ExtendedCSIMetricsManager{CSIMetricsManager: *r.m.Load()}.
		RecordMetricsClientInterceptor(ctx, method, req, reply, cc, invoker, opts...)
}

// MarkMigrated marks the CSI calls made with the returned context as
// operations on an in-tree volume migrated to CSI (or not): the "migrated"
// label of csi_sidecar_operations_seconds, as external-provisioner's and
// external-attacher's markAsMigrated.
func MarkMigrated(ctx context.Context, migrated bool) context.Context {
	return context.WithValue(ctx, connection.AdditionalInfoKey, connection.AdditionalInfo{Migrated: strconv.FormatBool(migrated)})
}

// Probe runs the driver's Probe RPC once (the livenessprobe's job).
func (c *Conn) Probe(ctx context.Context) error {
	ready, err := rpc.Probe(ctx, c.ClientConn)
	if err != nil {
		return err
	}
	if !ready {
		return fmt.Errorf("driver %s reports not ready", c.DriverName)
	}
	return nil
}

// Controller returns a CSI Controller client on the shared connection.
func (c *Conn) Controller() csi.ControllerClient { return csi.NewControllerClient(c.ClientConn) }

// Identity returns a CSI Identity client on the shared connection.
func (c *Conn) Identity() csi.IdentityClient { return csi.NewIdentityClient(c.ClientConn) }

// Node returns a CSI Node client on the shared connection.
func (c *Conn) Node() csi.NodeClient { return csi.NewNodeClient(c.ClientConn) }

// With returns o with extra interceptors appended.
func (o Options) With(i ...grpc.UnaryClientInterceptor) Options {
	o.Interceptors = append(append([]grpc.UnaryClientInterceptor{}, o.Interceptors...), i...)
	return o
}
