//go:build vmguest

package guest

import (
	"context"
	"flag"
	"os"
	"os/exec"
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
	// poolFSBytes is the size of the pool's ext4 (a sparse image on the VM's
	// tmpfs): room for the xfs case's 400 MiB volume, snapshot and restored
	// copy, while the tests write only a few MiB.
	poolFSBytes = 3 << 30
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
	d := &driver{t: t, hostNQN: hostNQN, poolDir: mountPoolFS(t, filepath.Base(base)), stateDir: filepath.Join(base, "node-state"),
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

// flags are what cmd/csi-hub-plugin would parse from --transport=nvme
// --nvme-listen-address=127.0.0.1 --nvme-zone=vm-zone; building through
// nvme.Flags exercises that wiring.
func (d *driver) flags() *nvme.Flags {
	f := &nvme.Flags{}
	fs := flag.NewFlagSet("csi-hub-plugin", flag.ContinueOnError)
	f.Register(fs)
	if err := fs.Parse([]string{"--nvme-listen-address=127.0.0.1", "--nvme-zone=" + zoneValue, "--nvme-attach-timeout=20s"}); err != nil {
		d.t.Fatal(err)
	}
	return f
}

func (d *driver) start() {
	t := d.t
	t.Helper()
	f := d.flags()
	tg, err := f.NewTarget(driverName)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(d.poolDir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ctrl, err := plugin.NewControllerServer(ctx, plugin.ControllerConfig{DriverName: driverName, NodeID: d.hostNQN,
		PoolDir: d.poolDir, Target: tg})
	if err != nil {
		t.Fatal(err)
	}
	ini, err := f.NewInitiator()
	if err != nil {
		t.Fatal(err)
	}
	topology, err := f.Topology(driverName)
	if err != nil {
		t.Fatal(err)
	}
	node, err := plugin.NewNodeServer(plugin.NodeConfig{DriverName: driverName, NodeID: ini.HostNQN(),
		Topology: topology, Initiator: ini, StateDir: d.stateDir})
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

// mountPoolFS puts the pool on ext4 over a loop device, as on a real storage
// host: nvmet then opens backing files with O_DIRECT (buffered_io=0), the
// production path, where tmpfs would need buffered I/O (TestTransport covers
// that one). The image lives on the VM's tmpfs and is sparse.
func mountPoolFS(t *testing.T, name string) string {
	t.Helper()
	img := "/tmp/pool-" + name + ".img"
	dir := "/tmp/pool-" + name
	makeBackingFile(t, img, poolFSBytes)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, "mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=1,lazy_journal_init=1", img)
	run(t, "mount", "-o", "loop", img, dir)
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-d", dir).CombinedOutput(); err != nil {
			t.Errorf("unmount pool %s: %v: %s", dir, err, out)
		}
	})
	return filepath.Join(dir, "pool")
}
