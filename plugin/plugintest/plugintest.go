// Package plugintest runs the CSI driver in-process on a real unix socket for
// tests: a controller on a temporary pool with the real bbolt store and the
// loop target, plus (optionally) a node service the caller built.
//
// Typical use (e.g. a csi-sanity test):
//
//	node, _ := plugin.NewNodeServer(plugin.NodeConfig{NodeID: "n1", ...})
//	d := plugintest.Start(t, plugintest.Options{Node: node, NodeID: "n1"})
//	// dial d.Endpoint ("unix:///..."); the pool is d.PoolDir; stopped by t.Cleanup.
//
// Options.NodeID must equal the node server's NodeID: the loop target only
// publishes to that node (any other is NotFound).
package plugintest

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/csi-hub/csi-hub/plugin"
	"github.com/csi-hub/csi-hub/plugin/pool"
	"github.com/csi-hub/csi-hub/plugin/transport/loop"
)

// Options configures Start; zero values pick test defaults.
type Options struct {
	DriverName string // default block.csi-hub.io
	NodeID     string // default csi-hub-test-node
	PoolDir    string // default a fresh t.TempDir()
	Capacity   int64  // pool capacity in bytes; 0: the filesystem size
	// Node is served next to Identity and Controller when set.
	Node csi.NodeServer
	// LocalNode, when Node is nil, serves a loop node service whose empty
	// publish contexts are resolved in this driver's own pool, as
	// csi-hub-plugin --mode=all --node-local-pool (CSIDriver attachRequired:
	// false). Its records go to NodeStateDir (default a fresh t.TempDir()).
	LocalNode    bool
	NodeStateDir string
	// GroupCopy tunes group snapshot copies (tests hook into the copy window).
	GroupCopy pool.GroupOptions
}

// Driver is a running in-process driver.
type Driver struct {
	Endpoint   string // unix:///path/csi.sock
	SocketPath string
	PoolDir    string
	NodeID     string
	DriverName string
	Controller *plugin.ControllerServer
	// Conn is a client connection to Endpoint.
	Conn *grpc.ClientConn

	opts   Options
	server *plugin.Server
}

// Start builds and serves the driver; t.Cleanup stops it.
func Start(t testing.TB, opts Options) *Driver {
	t.Helper()
	if opts.DriverName == "" {
		opts.DriverName = "block.csi-hub.io"
	}
	if opts.NodeID == "" {
		opts.NodeID = "csi-hub-test-node"
	}
	if opts.PoolDir == "" {
		opts.PoolDir = t.TempDir()
	}
	// Unix socket paths are limited to 108 bytes; t.TempDir() can be longer.
	sockDir, err := os.MkdirTemp("", "csi-hub-sock-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	d := &Driver{SocketPath: filepath.Join(sockDir, "csi.sock"), PoolDir: opts.PoolDir,
		NodeID: opts.NodeID, DriverName: opts.DriverName, opts: opts}
	d.Endpoint = "unix://" + d.SocketPath
	if opts.Node == nil && opts.LocalNode {
		if opts.NodeStateDir == "" {
			opts.NodeStateDir = t.TempDir()
		}
		node, err := plugin.NewNodeServer(plugin.NodeConfig{DriverName: opts.DriverName, NodeID: opts.NodeID,
			Initiator: loop.NewInitiator(), StateDir: opts.NodeStateDir, LocalPool: d,
			Topology: map[string]string{plugin.TopologyNodeKey(opts.DriverName): opts.NodeID}})
		if err != nil {
			t.Fatal(err)
		}
		d.opts.Node = node
	}
	d.start(t)
	conn, err := grpc.NewClient(d.Endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	d.Conn = conn
	t.Cleanup(func() {
		conn.Close()
		d.stop()
	})
	return d
}

func (d *Driver) start(t testing.TB) {
	t.Helper()
	target, err := loop.NewTarget(loop.TargetConfig{NodeID: d.NodeID, TopologyKey: plugin.TopologyNodeKey(d.DriverName)})
	if err != nil {
		t.Fatal(err)
	}
	ctrl, err := plugin.NewControllerServer(context.Background(), plugin.ControllerConfig{
		DriverName: d.DriverName, NodeID: d.NodeID, PoolDir: d.PoolDir, Capacity: d.opts.Capacity, Target: target,
		GroupCopy: d.opts.GroupCopy})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := plugin.Serve(plugin.ServerConfig{Endpoint: d.Endpoint, DriverName: d.DriverName,
		Controller: ctrl, Node: d.opts.Node, Ready: ctrl.Ready})
	if err != nil {
		ctrl.Close()
		t.Fatal(err)
	}
	d.Controller, d.server = ctrl, srv
}

func (d *Driver) stop() {
	if d.server != nil {
		d.server.Stop()
		d.Controller.Close()
		d.server = nil
	}
}

// Restart stops the server and controller and starts them again on the same
// pool and socket (the reconcile at start-up runs again). Conn stays usable.
func (d *Driver) Restart(t testing.TB) {
	t.Helper()
	d.stop()
	d.start(t)
}

// LocalPublishContext implements plugin.LocalPool with the running
// controller, so the node service of LocalNode follows Restart.
func (d *Driver) LocalPublishContext(ctx context.Context, volumeID string) (map[string]string, error) {
	return d.Controller.LocalPublishContext(ctx, volumeID)
}

// ControllerClient returns a Controller client on Conn.
func (d *Driver) ControllerClient() csi.ControllerClient { return csi.NewControllerClient(d.Conn) }

// IdentityClient returns an Identity client on Conn.
func (d *Driver) IdentityClient() csi.IdentityClient { return csi.NewIdentityClient(d.Conn) }

// GroupControllerClient returns a GroupController client on Conn.
func (d *Driver) GroupControllerClient() csi.GroupControllerClient {
	return csi.NewGroupControllerClient(d.Conn)
}

// NodeClient returns a Node client on Conn.
func (d *Driver) NodeClient() csi.NodeClient { return csi.NewNodeClient(d.Conn) }
