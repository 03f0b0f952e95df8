package vm

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/csi-hub/csi-hub/plugin/transport/nvme"
)

const mib = int64(1) << 20

func mountCapability(fs string) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: fs}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
}

func blockCapability(mode csi.VolumeCapability_AccessMode_Mode) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode},
	}
}

func randomPayload(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// create makes a volume in the zone through the storage host's controller.
func (b *bed) create(t testing.TB, name string, size int64, vc *csi.VolumeCapability) string {
	t.Helper()
	resp, err := b.storage.cc.CreateVolume(context.Background(), &csi.CreateVolumeRequest{Name: name,
		VolumeCapabilities: []*csi.VolumeCapability{vc}, CapacityRange: &csi.CapacityRange{RequiredBytes: size},
		AccessibilityRequirements: &csi.TopologyRequirement{Requisite: []*csi.Topology{{Segments: map[string]string{"topology.block.csi-hub.io/zone": zone}}}}})
	if err != nil {
		t.Fatalf("CreateVolume %s: %v", name, err)
	}
	return resp.GetVolume().GetVolumeId()
}

// attachment is a volume published, staged and published on one node.
type attachment struct {
	id, staging, target string
	node                *vmHost
	vc                  *csi.VolumeCapability
	pc                  map[string]string
}

// controllerPublish is the attacher's call.
func (b *bed) controllerPublish(t testing.TB, id string, node *vmHost, vc *csi.VolumeCapability) (map[string]string, error) {
	t.Helper()
	resp, err := b.storage.cc.ControllerPublishVolume(context.Background(), &csi.ControllerPublishVolumeRequest{
		VolumeId: id, NodeId: node.nodeID, VolumeCapability: vc})
	return resp.GetPublishContext(), err
}

// attach makes the calls in csi-hub's and the kubelet's order:
// ControllerPublishVolume, NodeStageVolume, NodePublishVolume.
func (b *bed) attach(t testing.TB, id string, node *vmHost, vc *csi.VolumeCapability, target string) *attachment {
	t.Helper()
	ctx := context.Background()
	start := time.Now()
	pc, err := b.controllerPublish(t, id, node, vc)
	if err != nil {
		t.Fatalf("ControllerPublishVolume %s to %s: %v", id, node.name, err)
	}
	if pc[nvme.KeyTraddr] != serviceAddr || pc[nvme.KeyTrsvcid] != nvmePort {
		t.Fatalf("publish context %v does not name the storage host's address %s:%s", pc, serviceAddr, nvmePort)
	}
	a := &attachment{id: id, node: node, vc: vc, pc: pc, staging: "/var/lib/kubelet/staging/" + id, target: "/var/lib/kubelet/pods/" + target}
	if _, err := node.nc.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, PublishContext: pc,
		StagingTargetPath: a.staging, VolumeCapability: vc}); err != nil {
		t.Fatalf("NodeStageVolume %s on %s: %v\n%s console tail:\n%s", id, node.name, err, node.name, tail(node.logPath, 40))
	}
	b.nodePublish(t, a, a.target)
	t.Logf("%s attached to %s (publish, stage, publish) in %v", id, node.name, time.Since(start).Round(time.Millisecond))
	return a
}

func (b *bed) nodePublish(t testing.TB, a *attachment, target string) {
	t.Helper()
	if _, err := a.node.nc.NodePublishVolume(context.Background(), &csi.NodePublishVolumeRequest{VolumeId: a.id, PublishContext: a.pc,
		StagingTargetPath: a.staging, TargetPath: target, VolumeCapability: a.vc}); err != nil {
		t.Fatalf("NodePublishVolume %s on %s at %s: %v", a.id, a.node.name, target, err)
	}
}

// detach makes the reverse calls: NodeUnpublishVolume, NodeUnstageVolume,
// ControllerUnpublishVolume.
func (b *bed) detach(t testing.TB, a *attachment) {
	t.Helper()
	ctx := context.Background()
	start := time.Now()
	if _, err := a.node.nc.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: a.id, TargetPath: a.target}); err != nil {
		t.Fatalf("NodeUnpublishVolume %s on %s: %v", a.id, a.node.name, err)
	}
	if _, err := a.node.nc.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: a.id, StagingTargetPath: a.staging}); err != nil {
		t.Fatalf("NodeUnstageVolume %s on %s: %v", a.id, a.node.name, err)
	}
	b.controllerUnpublish(t, a.id, a.node)
	t.Logf("%s detached from %s (unpublish, unstage, controller unpublish) in %v", a.id, a.node.name, time.Since(start).Round(time.Millisecond))
}

func (b *bed) controllerUnpublish(t testing.TB, id string, node *vmHost) {
	t.Helper()
	if _, err := b.storage.cc.ControllerUnpublishVolume(context.Background(), &csi.ControllerUnpublishVolumeRequest{VolumeId: id, NodeId: node.nodeID}); err != nil {
		t.Fatalf("ControllerUnpublishVolume %s from %s: %v", id, node.name, err)
	}
}

func (b *bed) deleteVolume(t testing.TB, id string) {
	t.Helper()
	if _, err := b.storage.cc.DeleteVolume(context.Background(), &csi.DeleteVolumeRequest{VolumeId: id}); err != nil {
		t.Errorf("DeleteVolume %s: %v", id, err)
	}
}

// writeFile writes data to path in the node's VM and syncs it.
func writeFile(t testing.TB, node *vmHost, path string, data []byte) {
	t.Helper()
	r := node.exec(t, 3*time.Minute, data, "sh", "-c", "cat > "+path+" && sync")
	if r.RC != 0 {
		t.Fatalf("%s: write %s: rc=%d %s: %s", node.name, path, r.RC, r.Err, r.Out)
	}
}

// readSum drops the node's page cache (the read goes over NVMe/TCP) and
// returns the sha256 of the first n bytes of path.
func readSum(t testing.TB, node *vmHost, path string, n int) string {
	t.Helper()
	out := node.sh(t, fmt.Sprintf("echo 3 > /proc/sys/vm/drop_caches; head -c %d %s | sha256sum", n, path))
	return strings.Fields(out)[0]
}

// nvmeConnect is a hand-made connect to the volume's subsystem with the
// node's own host NQN: what the target thinks of this host, bypassing the
// plugin. A successful one is disconnected again.
func (b *bed) nvmeConnect(t testing.TB, node *vmHost, id string) execResult {
	t.Helper()
	r := node.exec(t, time.Minute, nil, "nvme", "connect", "-t", "tcp", "-a", serviceAddr, "-s", nvmePort,
		"-n", nvme.SubsystemNQN(id), "--hostnqn", node.nodeID, "-l", "5")
	if r.RC == 0 {
		node.exec(t, time.Minute, nil, "nvme", "disconnect", "-n", nvme.SubsystemNQN(id))
	}
	return r
}

// refused checks that node cannot connect to the volume's subsystem while
// the target itself answers it (the discovery controller lists nothing the
// host may not see).
func (b *bed) refused(t testing.TB, node *vmHost, id string) {
	t.Helper()
	if d := node.exec(t, time.Minute, nil, "nvme", "discover", "-t", "tcp", "-a", serviceAddr, "-s", nvmePort, "--hostnqn", node.nodeID); d.RC != 0 {
		t.Fatalf("%s cannot reach the target's discovery controller at %s:%s: rc=%d %s", node.name, serviceAddr, nvmePort, d.RC, d.Out)
	} else if strings.Contains(string(d.Out), nvme.SubsystemNQN(id)) {
		t.Errorf("%s's discovery log lists %s, which is not published to it:\n%s", node.name, nvme.SubsystemNQN(id), d.Out)
	}
	r := b.nvmeConnect(t, node, id)
	if r.RC == 0 {
		t.Fatalf("%s connected to %s, which is not published to it", node.name, nvme.SubsystemNQN(id))
	}
	t.Logf("%s refused by the target for %s, as it must be: rc=%d %s", node.name, id, r.RC, strings.TrimSpace(string(r.Out)))
	if c := controllers(t, node); len(c) > 0 {
		t.Errorf("%s has NVMe controllers %v after a refused connect", node.name, c)
	}
}

// controllers lists node's NVMe controllers (/sys/class/nvme) with their state.
func controllers(t testing.TB, node *vmHost) []string {
	t.Helper()
	out := node.sh(t, `for c in /sys/class/nvme/nvme*; do [ -e "$c" ] && echo "${c##*/}:$(cat $c/state):$(cat $c/subsysnqn)"; done; true`)
	return strings.Fields(out)
}

// connections counts the storage host's established TCP connections on the
// NVMe port from node (/proc/net/tcp: the target's side of the queues).
func (b *bed) connections(t testing.TB, node *vmHost) int {
	t.Helper()
	ip := nodeIP(b, node)
	out := b.storage.sh(t, "cat /proc/net/tcp")
	port, _ := strconv.Atoi(nvmePort)
	n := 0
	for _, line := range strings.Split(out, "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 4 || f[3] != "01" { // ESTABLISHED
			continue
		}
		if !strings.HasSuffix(f[1], fmt.Sprintf(":%04X", port)) {
			continue
		}
		if remote := strings.Split(f[2], ":")[0]; remote == hexIP(ip) {
			n++
		}
	}
	return n
}

func nodeIP(b *bed, node *vmHost) string {
	for i, n := range b.nodes {
		if n == node {
			return fmt.Sprintf("10.18.%d.2", i+1)
		}
	}
	panic("not a node of the bed")
}

// hexIP is /proc/net/tcp's spelling of an IPv4 address (little-endian hex).
func hexIP(ip string) string {
	p := strings.Split(ip, ".")
	var s string
	for i := 3; i >= 0; i-- {
		v, _ := strconv.Atoi(p[i])
		s += fmt.Sprintf("%02X", v)
	}
	return s
}

// waitNoConnections waits until the target has no connection from node.
func (b *bed) waitNoConnections(t testing.TB, node *vmHost, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		n := b.connections(t, node)
		if n == 0 {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("the target still has %d connections from %s %v after it was unpublished", n, node.name, within)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func (b *bed) allowedHosts(t testing.TB, id string) []string {
	t.Helper()
	return strings.Fields(b.storage.sh(t, "ls /sys/kernel/config/nvmet/subsystems/"+nvme.SubsystemNQN(id)+"/allowed_hosts"))
}

// TestHostsStorageAndNode: the two-VM case, in make test. A storage host and
// one node on a private link: the node is refused before publish, attaches
// after it, writes, detaches; then its connection is gone at the target, it is
// refused again, and a second attach reads the bytes back.
func TestHostsStorageAndNode(t *testing.T) {
	start := time.Now()
	b := newBed(t, 1)
	n1 := b.nodes[0]
	vc := mountCapability("ext4")
	id := b.create(t, "two-hosts", 64*mib, vc)
	b.refused(t, n1, id)

	a := b.attach(t, id, n1, vc, "pod-a")
	if got := b.allowedHosts(t, id); len(got) != 1 || got[0] != n1.nodeID {
		t.Errorf("allowed_hosts of %s: %v, want [%s]", id, got, n1.nodeID)
	}
	if n := b.connections(t, n1); n == 0 {
		t.Errorf("staged on %s but the target has no connection from it", n1.name)
	}
	payload := randomPayload(t, 256<<10)
	writeFile(t, n1, a.target+"/data", payload)
	if got := readSum(t, n1, a.target+"/data", len(payload)); got != sha(payload) {
		t.Fatalf("read back %s, wrote %s", got, sha(payload))
	}
	b.detach(t, a)
	if c := controllers(t, n1); len(c) > 0 {
		t.Errorf("%s still has NVMe controllers %v after unstage and unpublish", n1.name, c)
	}
	b.waitNoConnections(t, n1, 10*time.Second)
	if got := b.allowedHosts(t, id); len(got) != 0 {
		t.Errorf("allowed_hosts of %s after unpublish: %v", id, got)
	}
	b.refused(t, n1, id)

	a = b.attach(t, id, n1, vc, "pod-b")
	if got := readSum(t, n1, a.target+"/data", len(payload)); got != sha(payload) {
		t.Fatalf("after detach and attach the file reads %s, wrote %s", got, sha(payload))
	}
	b.detach(t, a)
	b.deleteVolume(t, id)
	t.Logf("two-VM NVMe/TCP test: %v in all", time.Since(start).Round(100*time.Millisecond))
}

// TestHosts is issue 18's test bed: a storage host and two nodes, in make
// test (77 s on the idle 2-core machine); `make nvme-hosts` runs it alone.
// 1. the volume moves from node 1 to node 2 with its bytes (volume-moves);
// 2. a node is refused by the target until published to it, and its
// connection is gone after unpublish (volume-moves; force-detach for a node
// that never unstaged); 3. ReadWriteOnce and SINGLE_NODE_MULTI_WRITER
// (multi-attach); 4. storage host power cut and reboot under a staged volume
// (storage-reboot) and a link cut during I/O (link-cut).
func TestHosts(t *testing.T) {
	start := time.Now()
	b := newBed(t, 2)
	n1, n2 := b.nodes[0], b.nodes[1]

	t.Run("volume-moves", func(t *testing.T) { b.volumeMoves(t, n1, n2) })
	t.Run("multi-attach", func(t *testing.T) { b.multiAttach(t, n1, n2) })
	t.Run("force-detach", func(t *testing.T) { b.forceDetach(t, n2) })
	t.Run("storage-reboot", func(t *testing.T) { b.storageReboot(t, n1) })
	t.Run("link-cut", func(t *testing.T) { b.linkCut(t, n2) })
	t.Logf("three-VM NVMe/TCP test bed: %v in all", time.Since(start).Round(100*time.Millisecond))
}

// volumeMoves: issue 18 points 1 and 2.
func (b *bed) volumeMoves(t *testing.T, n1, n2 *vmHost) {
	vc := mountCapability("ext4")
	id := b.create(t, "moves", 64*mib, vc)
	b.refused(t, n1, id)
	b.refused(t, n2, id)
	a := b.attach(t, id, n1, vc, "pod-1")
	payload := randomPayload(t, 512<<10)
	writeFile(t, n1, a.target+"/data", payload)
	// Published to node 1 only: node 2 is still refused.
	b.refused(t, n2, id)
	b.detach(t, a)
	if c := controllers(t, n1); len(c) > 0 {
		t.Errorf("%s still has NVMe controllers %v after unstage and unpublish", n1.name, c)
	}
	b.waitNoConnections(t, n1, 10*time.Second)
	b.refused(t, n1, id)
	b.refused(t, n2, id)
	a = b.attach(t, id, n2, vc, "pod-2")
	if got := readSum(t, n2, a.target+"/data", len(payload)); got != sha(payload) {
		t.Fatalf("%s reads %s, %s wrote %s", n2.name, got, n1.name, sha(payload))
	}
	t.Logf("the bytes %s wrote are on %s", n1.name, n2.name)
	b.refused(t, n1, id)
	b.detach(t, a)
	b.deleteVolume(t, id)
}

// multiAttach: issue 18 point 3.
func (b *bed) multiAttach(t *testing.T, n1, n2 *vmHost) {
	ctx := context.Background()
	// ReadWriteOnce: refused for node 2 while published to node 1 (the EBS rule).
	vc := mountCapability("ext4")
	id := b.create(t, "rwo", 32*mib, vc)
	if _, err := b.controllerPublish(t, id, n1, vc); err != nil {
		t.Fatal(err)
	}
	_, err := b.controllerPublish(t, id, n2, vc)
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("ControllerPublishVolume of a volume published to %s, to %s: %v, want FailedPrecondition", n1.name, n2.name, err)
	}
	t.Logf("second node refused: %v", err)
	b.refused(t, n2, id)
	b.controllerUnpublish(t, id, n1)
	if _, err := b.controllerPublish(t, id, n2, vc); err != nil {
		t.Fatalf("ControllerPublishVolume to %s after unpublish from %s: %v", n2.name, n1.name, err)
	}
	b.controllerUnpublish(t, id, n2)
	b.deleteVolume(t, id)

	// SINGLE_NODE_MULTI_WRITER block volume: two publishes on node 1 write
	// and read the same device; node 2 is refused.
	bvc := blockCapability(csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER)
	bid := b.create(t, "snmw", 16*mib, bvc)
	a := b.attach(t, bid, n1, bvc, "pod-w1")
	second := "/var/lib/kubelet/pods/pod-w2"
	b.nodePublish(t, a, second)
	payload := randomPayload(t, 64<<10)
	r := n1.exec(t, time.Minute, payload, "dd", "of="+a.target, "bs=4096", "conv=notrunc,fsync")
	if r.RC != 0 {
		t.Fatalf("write through %s: %s %s", a.target, r.Err, r.Out)
	}
	if got := readSum(t, n1, second, len(payload)); got != sha(payload) {
		t.Errorf("the second publish reads %s, the first wrote %s", got, sha(payload))
	}
	if _, err := b.controllerPublish(t, bid, n2, bvc); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("SINGLE_NODE_MULTI_WRITER volume published to %s, to %s: %v, want FailedPrecondition", n1.name, n2.name, err)
	}
	if _, err := n1.nc.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: bid, TargetPath: second}); err != nil {
		t.Fatal(err)
	}
	b.detach(t, a)
	b.deleteVolume(t, bid)
}

// forceDetach: ControllerUnpublishVolume of a node that never unstaged (the
// attach-detach controller's force detach of a lost node) ends its
// connection at the target, which then refuses its reconnects.
func (b *bed) forceDetach(t *testing.T, n *vmHost) {
	ctx := context.Background()
	vc := blockCapability(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)
	id := b.create(t, "fenced", 16*mib, vc)
	a := b.attach(t, id, n, vc, "pod-f")
	if b.connections(t, n) == 0 {
		t.Fatalf("staged on %s but no connection at the target", n.name)
	}
	b.controllerUnpublish(t, id, n)
	took := b.waitNoConnections(t, n, 20*time.Second)
	t.Logf("force detach: the target dropped %s's connections %v after ControllerUnpublishVolume; its controllers now %v",
		n.name, took.Round(time.Millisecond), controllers(t, n))
	start := time.Now()
	uctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if _, err := n.nc.NodeUnpublishVolume(uctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: a.target}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.nc.NodeUnstageVolume(uctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: a.staging}); err != nil {
		t.Fatalf("NodeUnstageVolume after force detach: %v", err)
	}
	t.Logf("node clean-up after force detach took %v", time.Since(start).Round(time.Millisecond))
	if c := controllers(t, n); len(c) > 0 {
		t.Errorf("%s has controllers %v after unstage", n.name, c)
	}
	b.deleteVolume(t, id)
}

// storageReboot: issue 18 point 4, first half.
func (b *bed) storageReboot(t *testing.T, n1 *vmHost) {
	vc := mountCapability("ext4")
	id := b.create(t, "reboot", 64*mib, vc)
	a := b.attach(t, id, n1, vc, "pod-r")
	before := randomPayload(t, 256<<10)
	writeFile(t, n1, a.target+"/before", before)

	b.storage.kill()
	cut := time.Now()
	during := randomPayload(t, 256<<10)
	type res struct {
		r    execResult
		took time.Duration
	}
	done := make(chan res, 1)
	go func() {
		r := n1.exec(t, 12*time.Minute, during, "sh", "-c", "cat > "+a.target+"/during && sync")
		done <- res{r, time.Since(cut)}
	}()
	time.Sleep(3 * time.Second)
	select {
	case r := <-done:
		t.Fatalf("the write during the outage returned before the storage host was back: %+v", r)
	default:
	}
	t.Logf("storage host powered off; %s's controllers: %v", n1.name, controllers(t, n1))
	if err := b.boot(b.storage); err != nil {
		t.Fatalf("reboot storage host: %v", err)
	}
	b.startController()
	up := time.Since(cut)
	t.Logf("storage host back and its controller ready %v after the power cut", up.Round(100*time.Millisecond))
	if got := b.allowedHosts(t, id); len(got) != 1 || got[0] != n1.nodeID {
		t.Errorf("after the reboot allowed_hosts of %s is %v, want [%s] re-granted from the store", id, got, n1.nodeID)
	}
	select {
	case r := <-done:
		if r.r.RC != 0 {
			t.Fatalf("the write issued during the outage failed: rc=%d %s %s", r.r.RC, r.r.Err, r.r.Out)
		}
		t.Logf("the write issued during the outage completed %v after the power cut (%v after the controller was ready)",
			r.took.Round(100*time.Millisecond), (r.took - up).Round(100*time.Millisecond))
	case <-time.After(5 * time.Minute):
		t.Fatalf("the write issued during the outage did not complete 5m after the storage host came back; %s's controllers: %v", n1.name, controllers(t, n1))
	}
	if got := readSum(t, n1, a.target+"/before", len(before)); got != sha(before) {
		t.Errorf("data written before the reboot reads %s, want %s", got, sha(before))
	}
	if got := readSum(t, n1, a.target+"/during", len(during)); got != sha(during) {
		t.Errorf("data written during the outage reads %s, want %s", got, sha(during))
	}
	b.detach(t, a)
	b.deleteVolume(t, id)
}

// linkCut: issue 18 point 4, second half: the link between node and storage
// host is cut during I/O.
func (b *bed) linkCut(t *testing.T, n *vmHost) {
	ctx := context.Background()
	vc := blockCapability(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)
	id := b.create(t, "cut", 16*mib, vc)
	a := b.attach(t, id, n, vc, "pod-c")
	// The writer uses the namespace's device itself (NodeUnpublish removes
	// the published file) and stops, rc 2, should the device vanish between
	// two rounds instead of failing the one in flight.
	// (the multipath head nvmeXnY; the per-path nvmeXcYnZ has no device node).
	dev := "/dev/" + strings.TrimSpace(n.sh(t, "ls /sys/block | grep -E '^nvme[0-9]+n[0-9]+$' | head -n1"))
	if dev == "/dev/" {
		t.Fatalf("no NVMe namespace on %s: %v", n.name, controllers(t, n))
	}
	done := make(chan execResult, 1)
	go func() {
		done <- n.exec(t, 10*time.Minute, nil, "sh", "-c", "i=0; while [ -b "+dev+" ]; do dd if=/dev/zero of="+dev+
			" bs=4096 count=256 oflag=direct conv=notrunc 2>/tmp/dd.err >/dev/null || { grep -v records /tmp/dd.err; echo \"dd failed after $i rounds\"; exit 1; }; i=$((i+1)); done; echo \"device gone after $i rounds\"; exit 2")
	}()
	time.Sleep(3 * time.Second)
	link := b.storageLinkIDs[indexOf(b.nodes, n)]
	b.storage.hmp(t, "set_link "+link+" off")
	cut := time.Now()
	t.Logf("link %s cut during I/O", link)
	// Let the initiator notice (keep-alive, I/O timeout) before unstaging, as
	// a kubelet would after the pod was killed.
	time.Sleep(15 * time.Second)
	t.Logf("%s's controllers 15s after the cut: %v", n.name, controllers(t, n))
	start := time.Now()
	uctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if _, err := n.nc.NodeUnpublishVolume(uctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: a.target}); err != nil {
		t.Errorf("NodeUnpublishVolume with the link cut: %v", err)
	}
	_, err := n.nc.NodeUnstageVolume(uctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: a.staging})
	t.Logf("NodeUnstageVolume with the link cut returned in %v: %v", time.Since(start).Round(time.Millisecond), err)
	if err != nil {
		t.Errorf("NodeUnstageVolume with the link cut: %v", err)
	}
	select {
	case r := <-done:
		if r.RC != 1 {
			t.Errorf("the writer during the cut: rc=%d (want 1, an I/O error): %s", r.RC, r.Out)
		}
		t.Logf("the writer's error %v after the cut: %s", time.Since(cut).Round(time.Millisecond), bytes.TrimSpace(r.Out))
	case <-time.After(time.Minute):
		t.Errorf("the writer still hangs a minute after NodeUnstageVolume")
	}
	if c := controllers(t, n); len(c) > 0 {
		t.Errorf("%s has controllers %v after unstage with the link cut", n.name, c)
	}
	b.storage.hmp(t, "set_link "+link+" on")
	b.controllerUnpublish(t, id, n)
	b.waitNoConnections(t, n, 20*time.Second)
	b.deleteVolume(t, id)
}

func indexOf(nodes []*vmHost, n *vmHost) int {
	for i, x := range nodes {
		if x == n {
			return i
		}
	}
	return -1
}
