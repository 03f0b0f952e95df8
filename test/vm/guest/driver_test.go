//go:build vmguest

package guest

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/csi-hub/csi-hub/plugin"
	"github.com/csi-hub/csi-hub/plugin/transport/nvme"
)

const (
	driverName = "block.csi-hub.io"
	zoneValue  = "vm-zone"
	// poolCapacity is above the pool's tmpfs (80% of the VM's 1 GiB): backing
	// files are sparse and the tests write little, while the xfs case needs a
	// 400 MiB volume, its snapshot and its restored copy at once.
	poolCapacity = 2 << 30
)

// zoneKey is the topology key of nvme volumes: a zone, not a node, since any
// node that reaches the target can attach them.
var zoneKey = nvme.ZoneTopologyKey(driverName)

// driver is the csi-hub plugin wired with the nvme transport, the way
// cmd/csi-hub-plugin would with --transport=nvme (see notes/nvme-wiring.md):
// controller on an nvmet target at 127.0.0.1:4420, node with the nvme-tcp
// initiator whose node ID is the host NQN, both on one socket.
type driver struct {
	t        *testing.T
	hostNQN  string
	poolDir  string
	stateDir string
	endpoint string
	target   *nvme.Target
	ctrl     *plugin.ControllerServer
	srv      *plugin.Server
	conn     *grpc.ClientConn
	cc       csi.ControllerClient
	nc       csi.NodeClient
	ic       csi.IdentityClient
}

func startDriver(t *testing.T, base string) *driver {
	t.Helper()
	hostNQN, err := nvme.HostNQN()
	if err != nil {
		t.Fatal(err)
	}
	d := &driver{t: t, hostNQN: hostNQN, poolDir: filepath.Join(base, "pool"), stateDir: filepath.Join(base, "node-state"),
		endpoint: "unix://" + filepath.Join(base, "csi.sock")}
	d.start()
	conn, err := grpc.NewClient(d.endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	d.conn = conn
	d.cc, d.nc, d.ic = csi.NewControllerClient(conn), csi.NewNodeClient(conn), csi.NewIdentityClient(conn)
	t.Cleanup(func() {
		conn.Close()
		d.stop()
	})
	return d
}

func (d *driver) start() {
	t := d.t
	t.Helper()
	tg, err := nvme.NewTarget(nvme.TargetConfig{ListenAddress: "127.0.0.1", Port: nvme.DefaultPort,
		TopologyKey: zoneKey, TopologyValue: zoneValue})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(d.poolDir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ctrl, err := plugin.NewControllerServer(ctx, plugin.ControllerConfig{DriverName: driverName, NodeID: d.hostNQN,
		PoolDir: d.poolDir, Capacity: poolCapacity, Target: tg})
	if err != nil {
		t.Fatal(err)
	}
	ini, err := nvme.NewInitiator(nvme.InitiatorConfig{HostNQN: d.hostNQN, AttachTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	node, err := plugin.NewNodeServer(plugin.NodeConfig{DriverName: driverName, NodeID: ini.HostNQN(),
		Topology: map[string]string{zoneKey: zoneValue}, Initiator: ini, StateDir: d.stateDir})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := plugin.Serve(plugin.ServerConfig{Endpoint: d.endpoint, DriverName: driverName, Controller: ctrl, Node: node})
	if err != nil {
		ctrl.Close()
		t.Fatal(err)
	}
	d.target, d.ctrl, d.srv = tg, ctrl, srv
}

func (d *driver) stop() {
	if d.srv != nil {
		d.srv.Stop()
		d.ctrl.Close()
		d.srv = nil
	}
}

// restart stops the plugin and starts it again on the same pool and state.
func (d *driver) restart() {
	d.stop()
	d.start()
}
