//go:build vmguest

package guest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/csi-hub/csi-hub/plugin/transport"
	"github.com/csi-hub/csi-hub/plugin/transport/nvme"
)

const (
	driverName = "block.csi-hub.io"
	zoneValue  = "vm-zone"
	// pluginBinary is cmd/csi-hub-plugin, built static and put in the
	// initramfs by test/vm.
	pluginBinary = "/csi-hub-plugin"
	// poolFSBytes is the size of the pool's ext4 (a sparse image on the VM's
	// tmpfs): room for the xfs case's 400 MiB volume, snapshot and restored
	// copy, while the tests write only a few MiB.
	poolFSBytes = 3 << 30
)

// zoneKey is the topology key of nvme volumes: a zone, not a node, since any
// node that reaches the target can attach them.
var zoneKey = nvme.ZoneTopologyKey(driverName)

// driver is the real csi-hub-plugin process in mode all with the nvme
// transport: controller on an nvmet target at 127.0.0.1:4420, node with the
// nvme-tcp initiator whose node ID is the host NQN, both on one socket.
type driver struct {
	t        *testing.T
	hostNQN  string
	poolDir  string
	stateDir string
	endpoint string
	cmd      *exec.Cmd
	exited   chan error
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
	t.Cleanup(d.stop)
	return d
}

// start runs the plugin and waits until it answers Probe.
func (d *driver) start() {
	t := d.t
	t.Helper()
	cmd := exec.Command(pluginBinary, "--mode=all", "--transport=nvme", "--endpoint="+d.endpoint,
		"--node-id="+d.hostNQN, "--pool-dir="+d.poolDir, "--node-state-dir="+d.stateDir,
		"--nvme-listen-address=127.0.0.1", "--nvme-zone="+zoneValue, "--nvme-attach-timeout=20s", "-v=2")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout // the serial console
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d.cmd, d.exited = cmd, make(chan error, 1)
	go func() { d.exited <- cmd.Wait() }()
	conn, err := grpc.NewClient(d.endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	d.conn = conn
	d.cc, d.nc, d.ic = csi.NewControllerClient(conn), csi.NewNodeClient(conn), csi.NewIdentityClient(conn)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		resp, err := d.ic.Probe(ctx, &csi.ProbeRequest{})
		cancel()
		if err == nil && resp.GetReady().GetValue() {
			return
		}
		select {
		case err := <-d.exited:
			d.cmd = nil
			t.Fatalf("csi-hub-plugin exited during start-up: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("csi-hub-plugin not ready after 30s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop ends the plugin with SIGTERM, as kubelet would, and waits for it.
func (d *driver) stop() {
	if d.cmd == nil {
		return
	}
	d.conn.Close()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.exited:
		if err != nil && d.t != nil {
			d.t.Errorf("csi-hub-plugin exited with %v after SIGTERM", err)
		}
	case <-time.After(30 * time.Second):
		d.cmd.Process.Kill()
		<-d.exited
		if d.t != nil {
			d.t.Error("csi-hub-plugin ignored SIGTERM for 30s")
		}
	}
	d.cmd = nil
}

// restart stops the plugin and starts it again on the same pool and state.
func (d *driver) restart() {
	d.stop()
	d.start()
}

// wipeExport removes a volume's nvmet export and grants as a reboot of the
// storage host would (configfs does not survive one).
func wipeExport(t *testing.T, volumeID string) {
	t.Helper()
	tg, err := nvme.NewTarget(nvme.TargetConfig{ListenAddress: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := tg.Unexport(context.Background(), transport.Volume{ID: volumeID}); err != nil {
		t.Fatal(err)
	}
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
