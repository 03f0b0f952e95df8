package vm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/csi-hub/csi-hub/internal/checkout"
	"github.com/csi-hub/csi-hub/internal/testutil"
)

// The multi-host test bed: a storage host running the controller plugin over
// nvmet and nodes running the node plugin over nvme-tcp, each a qemu TCG VM
// whose /test is test/vm/hostagent. The VMs share private point-to-point links
// only (qemu dgram netdevs over unix sockets, one per node, on the storage
// host a NIC per node):
//
//	storage host  lo 10.18.0.1/32 (the advertised target address)
//	              NIC i 10.18.i.1/30  <->  node i 10.18.i.2/30, route 10.18.0.1 via 10.18.i.1
//
// Nodes cannot reach each other, and nothing else reaches the links. Each VM
// also has a control NIC on qemu's user net with restrict=on (no way out)
// whose two forwarded ports the test uses: the agent's HTTP API and the
// plugin's CSI socket, so the test makes the real CSI calls from the host.

const (
	serviceAddr = "10.18.0.1"
	zone        = "zone-a"
	nvmePort    = "4420"
)

// guestBinaries are the static plugin and agent `make test-deps` built into
// _output/vm (hack/vm/build-guests.sh). Stale ones (the sources changed
// since) fail the test: it must run what the tree says.
func guestBinaries(t testing.TB) (plugin, agent string) {
	t.Helper()
	repo := checkout.Root()
	dir := filepath.Join(repo, "_output", "vm")
	stamp, err := os.ReadFile(filepath.Join(dir, "stamp"))
	if err != nil {
		t.Fatalf("the multi-host VMs' binaries are not built: run `make test-deps` (hack/vm/build-guests.sh): %v", err)
	}
	sources, err := os.ReadFile(filepath.Join(dir, "sources"))
	if err != nil {
		t.Fatal(err)
	}
	var sums bytes.Buffer
	for _, p := range strings.Fields(string(sources)) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("_output/vm is stale (%v): run `make test-deps` (hack/vm/build-guests.sh)", err)
		}
		sum := sha256.Sum256(b)
		fmt.Fprintf(&sums, "%s  %s\n", hex.EncodeToString(sum[:]), p)
	}
	sum := sha256.Sum256(sums.Bytes())
	if got := hex.EncodeToString(sum[:])[:16]; got != strings.TrimSpace(string(stamp)) {
		t.Fatalf("_output/vm was built from other sources (stamp %s, tree %s): run `make test-deps` (hack/vm/build-guests.sh)", strings.TrimSpace(string(stamp)), got)
	}
	return filepath.Join(dir, "csi-hub-plugin"), filepath.Join(dir, "hostagent")
}

// hostsImage finds the VM image; only a machine that cannot run the VMs skips,
// loudly, and under CI=true even that fails.
func hostsImage(t testing.TB) *Image {
	t.Helper()
	testutil.SkipUnit(t, "qemu VMs")
	skip := func(why string) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and the multi-host NVMe/TCP VMs cannot run: %s", why)
		}
		t.Skipf("SKIPPING the multi-host NVMe/TCP VM test: %s", why)
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		skip("qemu-system-x86_64 is not installed (make deps installs it as root)")
	}
	repo := checkout.Root()
	img, err := CachedImage(repo)
	if err != nil {
		skip(err.Error())
	}
	return img
}

// vmHost is one VM of the bed.
type vmHost struct {
	name, uuid string
	memMiB     int
	agentArgs  []string
	qemuArgs   []string
	sockets    []string // local ends of its links, removed before each boot
	monitor    string   // qemu's HMP monitor socket
	logPath    string

	m                *Machine
	ctlPort, csiPort int
	http             *http.Client
	conn             *grpc.ClientConn
	cc               csi.ControllerClient
	nc               csi.NodeClient
	ic               csi.IdentityClient
	nodeID           string
	bootTime         time.Duration
}

// bed is a storage host and its nodes.
type bed struct {
	t              testing.TB
	img            *Image
	plugin, agent  string
	dir            string
	storage        *vmHost
	nodes          []*vmHost
	storageLinkIDs []string // netdev IDs of the storage host's links, per node
}

func mac(a, b int) string { return fmt.Sprintf("52:54:00:18:%02x:%02x", a, b) }

// newBed boots a storage host and n nodes and starts their plugins.
func newBed(t testing.TB, n int) *bed {
	img := hostsImage(t)
	plugin, agent := guestBinaries(t)
	dir, err := os.MkdirTemp("", "csi-hub-hosts-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	b := &bed{t: t, img: img, plugin: plugin, agent: agent, dir: dir}
	disk := filepath.Join(dir, "storage-disk.img")
	if err := os.WriteFile(disk, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, 2<<30); err != nil { // sparse
		t.Fatal(err)
	}
	s := &vmHost{name: "storage", uuid: "18180000-0000-4000-8000-000000000100", memMiB: 768,
		agentArgs: []string{"-ctl-mac", mac(0xf0, 0), "-lo-addr", serviceAddr + "/32", "-disk", "/dev/vda=/var/lib/csi-hub"},
		qemuArgs:  []string{"-drive", "file=" + disk + ",format=raw,if=virtio"}}
	b.storage = s
	for i := 1; i <= n; i++ {
		sEnd, nEnd := filepath.Join(dir, fmt.Sprintf("s-%d.sock", i)), filepath.Join(dir, fmt.Sprintf("n%d-s.sock", i))
		id := fmt.Sprintf("node%d", i)
		b.storageLinkIDs = append(b.storageLinkIDs, id)
		s.sockets = append(s.sockets, sEnd)
		s.qemuArgs = append(s.qemuArgs,
			"-netdev", fmt.Sprintf("dgram,id=%s,local.type=unix,local.path=%s,remote.type=unix,remote.path=%s", id, sEnd, nEnd),
			"-device", fmt.Sprintf("virtio-net-pci,netdev=%s,mac=%s", id, mac(i, 1)))
		s.agentArgs = append(s.agentArgs, "-if", fmt.Sprintf("%s=10.18.%d.1/30", mac(i, 1), i))
		node := &vmHost{name: id, uuid: fmt.Sprintf("18180000-0000-4000-8000-0000000001%02d", i), memMiB: 512,
			sockets: []string{nEnd},
			agentArgs: []string{"-ctl-mac", mac(0xf0, i), "-if", fmt.Sprintf("%s=10.18.%d.2/30", mac(i, 2), i),
				"-route", fmt.Sprintf("%s/32=10.18.%d.1", serviceAddr, i)},
			qemuArgs: []string{
				"-netdev", fmt.Sprintf("dgram,id=storage,local.type=unix,local.path=%s,remote.type=unix,remote.path=%s", nEnd, sEnd),
				"-device", fmt.Sprintf("virtio-net-pci,netdev=storage,mac=%s", mac(i, 2))}}
		b.nodes = append(b.nodes, node)
	}
	all := append([]*vmHost{s}, b.nodes...)
	for _, h := range all {
		h.monitor = filepath.Join(dir, h.name+".monitor")
		h.logPath = filepath.Join(os.TempDir(), "csi-hub-vm-hosts-"+h.name+".log")
		os.Remove(h.logPath)
	}
	t.Cleanup(func() {
		for _, h := range all {
			h.shutdown(t)
		}
	})
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(all))
	for i, h := range all {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = b.boot(h) }()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("boot %s: %v\nconsole tail:\n%s", all[i].name, err, tail(all[i].logPath, 60))
		}
	}
	var boots []string
	for _, h := range all {
		boots = append(boots, fmt.Sprintf("%s %v", h.name, h.bootTime.Round(100*time.Millisecond)))
	}
	t.Logf("%d VMs booted in parallel in %v (kernel %s; qemu start to agent: %s)", len(all), time.Since(start).Round(10*time.Millisecond), img.Version, strings.Join(boots, ", "))
	b.startController()
	for _, nd := range b.nodes {
		nd.startPlugin(t, "--mode=node", "--transport=nvme", "--node-state-dir=/var/lib/csi-hub/node",
			"--nvme-zone="+zone, "--nvme-attach-timeout=30s", "-v=2")
		info, err := nd.nc.NodeGetInfo(context.Background(), &csi.NodeGetInfoRequest{})
		if err != nil {
			t.Fatalf("%s NodeGetInfo: %v", nd.name, err)
		}
		want := "nqn.2014-08.org.nvmexpress:uuid:" + nd.uuid
		if info.GetNodeId() != want || info.GetAccessibleTopology().GetSegments()["topology.block.csi-hub.io/zone"] != zone {
			t.Fatalf("%s NodeGetInfo %v: want node ID %s (the host NQN from its machine UUID) in zone %s", nd.name, info, want, zone)
		}
		nd.nodeID = info.GetNodeId()
	}
	t.Logf("plugins ready %v after the first boot", time.Since(start).Round(10*time.Millisecond))
	return b
}

func (b *bed) startController() {
	b.storage.startPlugin(b.t, "--mode=controller", "--transport=nvme", "--node-id=storage-host",
		"--pool-dir=/var/lib/csi-hub/pool", "--nvme-listen-address=0.0.0.0", "--nvme-advertise-address="+serviceAddr,
		"--nvme-port="+nvmePort, "--nvme-zone="+zone, "-v=2")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// boot starts h's qemu and waits for its agent.
func (b *bed) boot(h *vmHost) error {
	for _, s := range append(h.sockets, h.monitor) {
		os.Remove(s)
	}
	var err error
	if h.ctlPort, err = freePort(); err != nil {
		return err
	}
	if h.csiPort, err = freePort(); err != nil {
		return err
	}
	logFile, err := os.OpenFile(h.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	args := append([]string{}, h.qemuArgs...)
	args = append(args,
		"-netdev", fmt.Sprintf("user,id=ctl,restrict=on,hostfwd=tcp:127.0.0.1:%d-:7000,hostfwd=tcp:127.0.0.1:%d-:7001", h.ctlPort, h.csiPort),
		"-device", "virtio-net-pci,netdev=ctl,mac="+h.agentArgs[1], // -ctl-mac's value
		"-monitor", "unix:"+h.monitor+",server=on,wait=off")
	start := time.Now()
	m, err := Start(context.Background(), RunOptions{Image: b.img, Guest: b.agent, Args: h.agentArgs,
		Executables: map[string]string{"csi-hub-plugin": b.plugin}, Log: logFile, Timeout: 30 * time.Minute,
		MemoryMiB: h.memMiB, UUID: h.uuid, QemuArgs: args})
	if err != nil {
		logFile.Close()
		return err
	}
	go func() { m.Wait(); logFile.Close() }()
	h.m = m
	h.http = &http.Client{Timeout: 10 * time.Minute}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		c := http.Client{Timeout: 2 * time.Second}
		resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/ping", h.ctlPort))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-m.Done():
			return fmt.Errorf("VM %s exited before its agent answered", h.name)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("VM %s: agent not answering after 5m: %v", h.name, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	h.bootTime = time.Since(start)
	// The plugin starts after the agent: retry the forwarded socket briskly,
	// not with gRPC's default backoff of up to two minutes.
	conn, err := grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", h.csiPort), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, MaxDelay: time.Second},
			MinConnectTimeout: 5 * time.Second}))
	if err != nil {
		return err
	}
	h.conn = conn
	h.cc, h.nc, h.ic = csi.NewControllerClient(conn), csi.NewNodeClient(conn), csi.NewIdentityClient(conn)
	return nil
}

// shutdown powers the VM off through its agent, or kills it.
func (h *vmHost) shutdown(t testing.TB) {
	if h.m == nil {
		return
	}
	if h.conn != nil {
		h.conn.Close()
	}
	c := http.Client{Timeout: 40 * time.Second}
	if resp, err := c.Post(fmt.Sprintf("http://127.0.0.1:%d/poweroff", h.ctlPort), "", nil); err == nil {
		resp.Body.Close()
	}
	select {
	case <-h.m.Done():
	case <-time.After(30 * time.Second):
		t.Logf("%s did not power off in 30s: killing qemu", h.name)
	}
	h.m.Kill()
	h.m = nil
}

// kill pulls the VM's plug.
func (h *vmHost) kill() {
	if h.conn != nil {
		h.conn.Close()
		h.conn = nil
	}
	h.m.Kill()
	h.m = nil
}

func (h *vmHost) post(t testing.TB, path string, in, out any) {
	t.Helper()
	body, _ := json.Marshal(in)
	resp, err := h.http.Post(fmt.Sprintf("http://127.0.0.1:%d%s", h.ctlPort, path), "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("%s %s: %v", h.name, path, err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %s: %s", h.name, path, resp.Status, buf.String())
	}
	if out != nil {
		if err := json.Unmarshal(buf.Bytes(), out); err != nil {
			t.Fatalf("%s %s: %v: %s", h.name, path, err, buf.String())
		}
	}
}

type execResult struct {
	RC  int    `json:"rc"`
	Out []byte `json:"out"`
	Err string `json:"err"`
}

// exec runs a command in the VM.
func (h *vmHost) exec(t testing.TB, timeout time.Duration, stdin []byte, argv ...string) execResult {
	t.Helper()
	var r execResult
	h.post(t, "/exec", map[string]any{"argv": argv, "stdin": stdin, "timeoutMS": timeout.Milliseconds()}, &r)
	return r
}

// sh runs a shell script in the VM and fails the test unless it succeeds.
func (h *vmHost) sh(t testing.TB, script string) string {
	t.Helper()
	r := h.exec(t, 2*time.Minute, nil, "sh", "-c", script)
	if r.RC != 0 {
		t.Fatalf("%s: sh -c %q: rc=%d %s: %s", h.name, script, r.RC, r.Err, r.Out)
	}
	return string(r.Out)
}

func (h *vmHost) startPlugin(t testing.TB, args ...string) {
	t.Helper()
	h.post(t, "/plugin/start", args, nil)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		resp, err := h.ic.Probe(ctx, &csi.ProbeRequest{})
		cancel()
		if err == nil && resp.GetReady().GetValue() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: csi-hub-plugin not ready after 2m: %v\nconsole tail:\n%s", h.name, err, tail(h.logPath, 40))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// hmp sends one command to qemu's monitor (set_link, for a cable pull).
func (h *vmHost) hmp(t testing.TB, cmd string) string {
	t.Helper()
	c, err := net.DialTimeout("unix", h.monitor, 5*time.Second)
	if err != nil {
		t.Fatalf("%s monitor: %v", h.name, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c, "%s\n", cmd); err != nil {
		t.Fatalf("%s monitor: %v", h.name, err)
	}
	time.Sleep(300 * time.Millisecond)
	buf := make([]byte, 4096)
	n, _ := c.Read(buf)
	return string(buf[:n])
}
