package fakedriver

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"k8s.io/klog/v2"
)

// DefaultDriverName is the driver name when Options.Name is empty.
const DefaultDriverName = "fake.csi-hub.io"

// Defaults applied by New when the matching Options field is zero.
const (
	DefaultNodeID              = "fake-node"
	DefaultTopologyKey         = "topology.fake.csi-hub.io/zone"
	DefaultTotalCapacity       = 100 << 30
	DefaultVolumeSize          = 1 << 30
	DefaultStopTimeout         = 10 * time.Second
	sizeGranularity      int64 = 1 << 20
)

// DefaultMutableParameterKeys are the keys ControllerModifyVolume accepts when
// Options.MutableParameterKeys is nil.
var DefaultMutableParameterKeys = []string{"iops", "throughput"}

// DefaultControllerCapabilities is what the driver advertises when
// Options.ControllerCapabilities is nil: everything csi-hub drives except
// attach (PUBLISH_UNPUBLISH_VOLUME), which is off so the "trivial attacher"
// path is the default.
func DefaultControllerCapabilities() []csi.ControllerServiceCapability_RPC_Type {
	return []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
		csi.ControllerServiceCapability_RPC_EXPAND_VOLUME,
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT,
		csi.ControllerServiceCapability_RPC_LIST_SNAPSHOTS,
		csi.ControllerServiceCapability_RPC_CLONE_VOLUME,
		csi.ControllerServiceCapability_RPC_MODIFY_VOLUME,
		csi.ControllerServiceCapability_RPC_GET_CAPACITY,
		csi.ControllerServiceCapability_RPC_LIST_VOLUMES,
	}
}

// Options configure a Driver. The zero value is a usable default driver.
type Options struct {
	// Name is returned by GetPluginInfo. Default DefaultDriverName.
	Name string
	// VendorVersion is returned by GetPluginInfo. Default "0.0.1-fake".
	VendorVersion string
	// NodeID is what NodeGetInfo reports. Default DefaultNodeID.
	NodeID string
	// Nodes are the node IDs the backend knows: ControllerPublishVolume to
	// any other node is NotFound, as with a real storage system. Default {NodeID}.
	Nodes []string

	// ControllerCapabilities replaces DefaultControllerCapabilities when non-nil.
	// RPCs whose capability is missing return Unimplemented, as real drivers do.
	ControllerCapabilities []csi.ControllerServiceCapability_RPC_Type
	// Attach adds PUBLISH_UNPUBLISH_VOLUME: ControllerPublishVolume records
	// attachments and returns a publish context.
	Attach bool
	// ListPublishedNodes adds LIST_VOLUMES_PUBLISHED_NODES: ListVolumes and
	// ControllerGetVolume report the nodes each volume is published to.
	ListPublishedNodes bool
	// NodeExpansionRequired is ControllerExpandVolume's node_expansion_required;
	// it also makes the node service advertise EXPAND_VOLUME.
	NodeExpansionRequired bool
	// MaxVolumesPerNode is reported by NodeGetInfo and enforced by
	// ControllerPublishVolume (0: no limit).
	MaxVolumesPerNode int64

	// Topology switches on the VOLUME_ACCESSIBILITY_CONSTRAINTS plugin
	// capability: NodeGetInfo reports {TopologyKey: NodeZone}, CreateVolume
	// honours accessibility_requirements and returns accessible_topology.
	Topology bool
	// TopologyKey defaults to DefaultTopologyKey.
	TopologyKey string
	// Zones are the zones the backend can place volumes in. Default {"zone-a", "zone-b"}.
	Zones []string
	// NodeZone is this node's zone. Default Zones[0].
	NodeZone string

	// TotalCapacityBytes is the backend pool size; volumes consume it and
	// GetCapacity reports what is left. Default DefaultTotalCapacity.
	TotalCapacityBytes int64
	// DefaultVolumeBytes is the size of a volume created without capacity_range.
	// Default DefaultVolumeSize.
	DefaultVolumeBytes int64

	// MutableParameterKeys are the keys ControllerModifyVolume (and CreateVolume's
	// mutable_parameters) accept; any other key is InvalidArgument.
	// nil means DefaultMutableParameterKeys.
	MutableParameterKeys []string
	// InfeasibleMutableParameters maps key -> value that the backend can never
	// satisfy; such a request gets InvalidArgument, which external-resizer
	// treats as infeasible.
	InfeasibleMutableParameters map[string]string

	// SnapshotReadyAfterPolls keeps a new snapshot's ready_to_use false until it
	// has been observed this many times after CreateSnapshot returned (by
	// ListSnapshots, GetSnapshot or a repeated CreateSnapshot with the same
	// name); the N-th observation reports ready. 0: no poll condition.
	SnapshotReadyAfterPolls int
	// SnapshotReadyAfter keeps a new snapshot unready until this long after its
	// creation. 0: no time condition. With both conditions zero snapshots are
	// ready at once; with both set, both must hold.
	SnapshotReadyAfter time.Duration

	// AbortConcurrent makes a mutating call fail with Aborted while another
	// call on the same object (volume name or ID, snapshot name or ID) is in
	// flight, including one held by a Gate or a delay, as drivers built on
	// csi-lib-utils-style operation locks do.
	AbortConcurrent bool

	// NotReady makes Probe report ready=false until SetReady(true).
	NotReady bool

	// StateFile, when set, persists volumes and snapshots as JSON after every
	// change, and New loads it if it exists, so a brand-new Driver can take over
	// a previous one's backend.
	StateFile string
	// CreateTargetPaths makes NodePublishVolume create the target path (a
	// directory for mount, a file for block) and NodeUnpublishVolume remove it,
	// as a real kubelet expects. Off by default so unit tests can use any path.
	CreateTargetPaths bool

	// StopTimeout bounds how long Stop waits for in-flight calls before
	// cutting them off. Default DefaultStopTimeout.
	StopTimeout time.Duration
}

// Driver is an in-memory CSI driver. It is safe for concurrent use.
type Driver struct {
	opts         Options
	controllerOn map[csi.ControllerServiceCapability_RPC_Type]bool
	mutableKeys  map[string]bool
	ready        atomic.Bool

	lifeMu  sync.Mutex // serialises Start/Stop
	server  *grpc.Server
	lis     net.Listener
	socket  string
	loadErr error

	mu         sync.Mutex // guards state, totalBytes and every backend operation
	state      state
	totalBytes int64

	faults   faults
	calls    callLog
	inflight inflight

	conditions map[string]volumeCondition // guarded by mu; see condition.go
}

// New returns a driver configured by opts. If opts.StateFile exists it is
// loaded; a load error is returned by Start.
func New(opts Options) *Driver {
	opts = withDefaults(opts)
	d := &Driver{
		opts:         opts,
		controllerOn: map[csi.ControllerServiceCapability_RPC_Type]bool{},
		mutableKeys:  map[string]bool{},
		state:        newState(),
		totalBytes:   opts.TotalCapacityBytes,
	}
	for _, c := range opts.ControllerCapabilities {
		d.controllerOn[c] = true
	}
	if opts.Attach {
		d.controllerOn[csi.ControllerServiceCapability_RPC_PUBLISH_UNPUBLISH_VOLUME] = true
	}
	if opts.ListPublishedNodes {
		d.controllerOn[csi.ControllerServiceCapability_RPC_LIST_VOLUMES_PUBLISHED_NODES] = true
	}
	for _, k := range opts.MutableParameterKeys {
		d.mutableKeys[k] = true
	}
	d.ready.Store(!opts.NotReady)
	if opts.StateFile != "" {
		// A missing directory would fail every later save; create it now.
		if err := os.MkdirAll(filepath.Dir(opts.StateFile), 0o755); err != nil {
			d.loadErr = fmt.Errorf("creating fake driver state directory: %w", err)
			return d
		}
		st, err := loadState(opts.StateFile)
		if err != nil {
			d.loadErr = fmt.Errorf("loading fake driver state: %w", err)
		} else {
			d.state = st
		}
	}
	return d
}

func withDefaults(o Options) Options {
	if o.Name == "" {
		o.Name = DefaultDriverName
	}
	if o.VendorVersion == "" {
		o.VendorVersion = "0.0.1-fake"
	}
	if o.NodeID == "" {
		o.NodeID = DefaultNodeID
	}
	if len(o.Nodes) == 0 {
		o.Nodes = []string{o.NodeID}
	}
	if o.ControllerCapabilities == nil {
		o.ControllerCapabilities = DefaultControllerCapabilities()
	}
	if o.TopologyKey == "" {
		o.TopologyKey = DefaultTopologyKey
	}
	if len(o.Zones) == 0 {
		o.Zones = []string{"zone-a", "zone-b"}
	}
	if o.NodeZone == "" {
		o.NodeZone = o.Zones[0]
	}
	if o.TotalCapacityBytes == 0 {
		o.TotalCapacityBytes = DefaultTotalCapacity
	}
	if o.DefaultVolumeBytes == 0 {
		o.DefaultVolumeBytes = DefaultVolumeSize
	}
	if o.MutableParameterKeys == nil {
		o.MutableParameterKeys = DefaultMutableParameterKeys
	}
	if o.StopTimeout == 0 {
		o.StopTimeout = DefaultStopTimeout
	}
	return o
}

// Name is the driver name GetPluginInfo reports.
func (d *Driver) Name() string { return d.opts.Name }

// NodeID is the node ID NodeGetInfo reports.
func (d *Driver) NodeID() string { return d.opts.NodeID }

// SetTotalCapacity resizes the backend pool, e.g. to make GetCapacity change
// or CreateVolume run out of space mid-test. Existing volumes are kept.
func (d *Driver) SetTotalCapacity(bytes int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.totalBytes = bytes
}

func (d *Driver) freeBytesLocked() int64 { return d.totalBytes - d.state.usedBytes() }

// SetReady sets what Probe reports from now on.
func (d *Driver) SetReady(ready bool) { d.ready.Store(ready) }

// Start serves the CSI services on a unix socket at socketPath, replacing a
// stale socket left there by a previous run. It returns once the socket
// accepts connections. A stopped driver can be started again, on the same
// path or another, and keeps its state.
func (d *Driver) Start(socketPath string) error {
	d.lifeMu.Lock()
	defer d.lifeMu.Unlock()
	if d.loadErr != nil {
		return d.loadErr
	}
	if d.server != nil {
		return fmt.Errorf("fake driver already serving on %s", d.socket)
	}
	if err := removeStaleSocket(socketPath); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(socketPath), 0o755); err != nil {
		return fmt.Errorf("creating socket directory: %w", err)
	}
	lis, err := net.Listen("unix", socketPath)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", socketPath, err)
	}
	srv := grpc.NewServer(grpc.UnaryInterceptor(d.intercept))
	csi.RegisterIdentityServer(srv, &identityServer{d: d})
	csi.RegisterControllerServer(srv, &controllerServer{d: d})
	csi.RegisterNodeServer(srv, &nodeServer{d: d})
	d.server, d.lis, d.socket = srv, lis, socketPath
	go func() {
		if err := srv.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			klog.ErrorS(err, "Fake CSI driver stopped serving", "socket", socketPath)
		}
	}()
	klog.V(2).InfoS("Fake CSI driver serving", "driver", d.opts.Name, "socket", socketPath)
	return nil
}

// Stop stops serving gracefully: no new calls are accepted and in-flight calls
// may finish, for at most Options.StopTimeout (calls held by a Gate count as
// in flight). The socket file is gone when it returns. It is a no-op on a
// stopped driver.
func (d *Driver) Stop() { d.stop(true) }

// StopNow stops serving immediately: connections and the socket are closed
// and callers of in-flight calls get Unavailable. The handlers of those calls still run to
// completion in the background, like a backend that finishes an operation
// whose caller went away.
func (d *Driver) StopNow() { d.stop(false) }

func (d *Driver) stop(graceful bool) {
	d.lifeMu.Lock()
	defer d.lifeMu.Unlock()
	srv := d.server
	if srv == nil {
		return
	}
	d.server = nil
	if graceful {
		done := make(chan struct{})
		go func() { srv.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(d.opts.StopTimeout):
			klog.InfoS("Fake CSI driver graceful stop timed out; stopping now", "socket", d.socket)
			// Handlers held by a gate keep running; Stop only cuts off their callers.
			srv.Stop()
		}
	} else {
		srv.Stop()
	}
	// gRPC closes the listener (which unlinks the socket) from the Serve
	// goroutine, possibly later; closing it here makes the socket disappear
	// before Stop returns. A second Close is harmless.
	_ = d.lis.Close()
	klog.V(2).InfoS("Fake CSI driver stopped", "socket", d.socket, "graceful", graceful)
}

// removeStaleSocket removes a socket file left by a previous server, but never
// a file of another kind: the caller passed a wrong path.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("%s exists and is not a socket", path)
	}
	return os.Remove(path)
}
