package plugin

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/csi-hub/csi-hub/plugin/transport"
	"github.com/csi-hub/csi-hub/plugin/transport/loop"
)

// requireRootNode skips tests that need real loop devices and mounts, loudly.
func requireRootNode(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIPPING: node tests need root for real loop devices and mounts; run them as root (sudo go test ./plugin/)")
	}
	for _, tool := range []string{"losetup", "mkfs.ext4", "blkid"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing: install util-linux/e2fsprogs (hack/install-deps.sh)", tool)
		}
	}
}

// nodeEnv is a node server on a private state dir with a scratch "pool", and a
// cleanup that leaves no mount or loop device behind even when a test fails.
// Its mounts and loop devices are its own (below its directory, found by
// backing file), so the tests that use it run with t.Parallel.
type nodeEnv struct {
	t    testing.TB
	node *NodeServer
	root string // everything of the test lives below it
	pool string
}

func newNodeEnv(t testing.TB) *nodeEnv {
	t.Helper()
	root := t.TempDir()
	e := &nodeEnv{t: t, root: root, pool: filepath.Join(root, "pool")}
	if err := os.MkdirAll(e.pool, 0o700); err != nil {
		t.Fatal(err)
	}
	e.node = e.newServer()
	t.Cleanup(e.cleanup)
	return e
}

// newServer returns another node server on the same state dir, as after a
// plugin restart.
func (e *nodeEnv) newServer() *NodeServer {
	n, err := NewNodeServer(NodeConfig{DriverName: "hub.csi.test", NodeID: "node-1", Initiator: loop.NewInitiator(),
		StateDir: filepath.Join(e.root, "state"), Topology: map[string]string{TopologyNodeKey("hub.csi.test"): "node-1"}})
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

func (e *nodeEnv) cleanup() {
	// Unmount deepest first, then free the loop devices of our files.
	mounts := e.mountsBelowRoot()
	for i := len(mounts) - 1; i >= 0; i-- {
		_ = unix.Unmount(mounts[i], unix.MNT_DETACH)
	}
	out, _ := exec.Command("losetup", "--all", "--noheadings", "--output", "NAME,BACK-FILE").Output()
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && strings.HasPrefix(f[1], e.root) {
			_ = exec.Command("losetup", "--detach", f[0]).Run()
		}
	}
}

// mountsBelowRoot lists mount points of /proc/mounts inside the test's root.
func (e *nodeEnv) mountsBelowRoot() []string {
	raw, err := os.ReadFile("/proc/mounts")
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && strings.HasPrefix(f[1], e.root) {
			out = append(out, f[1])
		}
	}
	return out
}

// loopDevicesOfRoot lists `losetup -a` lines naming a file inside the test's root.
func (e *nodeEnv) loopDevicesOfRoot() []string {
	out, err := exec.Command("losetup", "-a").CombinedOutput()
	if err != nil {
		e.t.Fatalf("losetup -a: %v: %s", err, out)
	}
	var found []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, e.root) {
			found = append(found, line)
		}
	}
	return found
}

// requireClean fails unless no mount and no loop device of the test is left.
func (e *nodeEnv) requireClean() {
	e.t.Helper()
	if m := e.mountsBelowRoot(); len(m) > 0 {
		e.t.Errorf("mounts left in /proc/mounts: %v", m)
	}
	if l := e.loopDevicesOfRoot(); len(l) > 0 {
		e.t.Errorf("loop devices left in losetup -a: %v", l)
	}
}

// newVolume makes a sparse backing file and the publish context the loop
// target would return for it.
func (e *nodeEnv) newVolume(id string, size int64) map[string]string {
	e.t.Helper()
	path := filepath.Join(e.pool, id+".img")
	f, err := os.Create(path)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		e.t.Fatal(err)
	}
	f.Close()
	return map[string]string{transport.KeyTransport: loop.Name, transport.KeyVolumeID: id, loop.KeyBackingFile: path}
}

func (e *nodeEnv) path(name string) string { return filepath.Join(e.root, name) }

func mountCap(fsType string, mode csi.VolumeCapability_AccessMode_Mode, flags ...string) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: fsType, MountFlags: flags}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode},
	}
}

func blockCap(mode csi.VolumeCapability_AccessMode_Mode) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode},
	}
}

const snw = csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER

func (e *nodeEnv) stage(id string, pc map[string]string, staging string, vc *csi.VolumeCapability, volCtx map[string]string) error {
	_, err := e.node.NodeStageVolume(context.Background(), &csi.NodeStageVolumeRequest{
		VolumeId: id, PublishContext: pc, StagingTargetPath: staging, VolumeCapability: vc, VolumeContext: volCtx})
	return err
}

func (e *nodeEnv) publish(id string, pc map[string]string, staging, target string, vc *csi.VolumeCapability, readOnly bool) error {
	_, err := e.node.NodePublishVolume(context.Background(), &csi.NodePublishVolumeRequest{
		VolumeId: id, PublishContext: pc, StagingTargetPath: staging, TargetPath: target, VolumeCapability: vc, Readonly: readOnly})
	return err
}

func (e *nodeEnv) unpublish(id, target string) error {
	_, err := e.node.NodeUnpublishVolume(context.Background(), &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target})
	return err
}

func (e *nodeEnv) unstage(id, staging string) error {
	_, err := e.node.NodeUnstageVolume(context.Background(), &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging})
	return err
}

func must(t testing.TB, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// wantCode fails unless err is a gRPC status with code and a message holding
// every one of the words (the offending field, typically).
func wantCode(t testing.TB, what string, err error, code codes.Code, words ...string) {
	t.Helper()
	st, _ := status.FromError(err)
	if err == nil || st.Code() != code {
		t.Errorf("%s: got %v, want code %s", what, err, code)
		return
	}
	for _, w := range words {
		if !strings.Contains(st.Message(), w) {
			t.Errorf("%s: message %q does not name %q", what, st.Message(), w)
		}
	}
}

func statfs(t testing.TB, path string) unix.Statfs_t {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		t.Fatalf("statfs %s: %v", path, err)
	}
	return st
}
