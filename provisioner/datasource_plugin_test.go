package provisioner

import (
	"bytes"
	"crypto/rand"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/csi-hub/csi-hub/plugin"
	"github.com/csi-hub/csi-hub/plugin/plugintest"
	"github.com/csi-hub/csi-hub/plugin/transport/loop"
)

// With the companion driver (real pool files, real loop devices), data
// survives restore and clone: bytes written through a volume's block device
// before a snapshot come back from the restored volume, and the clone holds
// what the source held when it was cloned (written after the snapshot).
//
// The data goes the way a pod's would: ControllerPublishVolume, NodeStage and
// NodePublish as a raw block volume (the plugin's node service attaches the
// backing file as a loop device), then reads and writes on the published
// device node. Only the kubelet is missing; the test makes its calls.
func TestRestoreAndCloneKeepData(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIPPING: the companion driver's node service needs root for loop devices; run as root")
	}
	e := baseEnv(t, DefaultConfig())
	e.driver = strings.TrimSuffix(e.driver, ".fake.csi-hub.io") + ".block.csi-hub.io"
	nodeName := e.ns + "-storage"
	key := plugin.TopologyNodeKey(e.driver)
	node, err := plugin.NewNodeServer(plugin.NodeConfig{DriverName: e.driver, NodeID: nodeName, Initiator: loop.NewInitiator(),
		StateDir: t.TempDir(), Topology: map[string]string{key: nodeName}})
	if err != nil {
		t.Fatal(err)
	}
	d := plugintest.Start(t, plugintest.Options{DriverName: e.driver, NodeID: nodeName, Capacity: 1 << 30, Node: node})
	e.socket = d.SocketPath
	if _, err := e.kube.CoreV1().Nodes().Create(e.ctx, &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName,
		Labels: map[string]string{key: nodeName}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.kube.CoreV1().Nodes().Delete(e.ctx, nodeName, metav1.DeleteOptions{}) })
	if _, err := e.c.CreateCSINode(e.ctx, nodeName, e.driver, nodeName, []string{key}); err != nil {
		t.Fatal(err)
	}
	s := &sourceEnv{env: e}
	s.startHub()
	dev := &blockIO{t: t, d: d, dir: t.TempDir()}

	sc := s.storageClass("pool", withPolicy(v1.PersistentVolumeReclaimDelete))
	s.createPVC("src", sc.Name, "64Mi", blockMode)
	_, srcPV := s.waitBound("src")
	const off = 3 << 20
	before, after := randomBytes(t, 1<<20), randomBytes(t, 1<<20)
	dev.write(srcPV, off, before)

	s.takeSnapshot("snap", "src", s.snapshotClass())
	dev.write(srcPV, off, after) // the source moves on; the snapshot must not

	began := time.Now()
	s.createPVC("restored", sc.Name, "128Mi", blockMode, fromSnapshot("snap"))
	_, restoredPV := s.waitBound("restored")
	t.Logf("restore of a 64Mi snapshot into 128Mi bound in %s", time.Since(began).Round(time.Millisecond))
	if got, size := dev.read(restoredPV, off, len(before)); !bytes.Equal(got, before) {
		t.Errorf("restored volume does not hold the bytes written before the snapshot")
	} else if size != 128<<20 {
		t.Errorf("restored block device is %d bytes, want the 128Mi asked for", size)
	}

	began = time.Now()
	s.createPVC("clone", sc.Name, "64Mi", blockMode, fromClaim("src"))
	_, clonePV := s.waitBound("clone")
	t.Logf("clone of a 64Mi volume bound in %s", time.Since(began).Round(time.Millisecond))
	if got, _ := dev.read(clonePV, off, len(after)); !bytes.Equal(got, after) {
		t.Errorf("clone does not hold the source's current bytes")
	}
	if got, _ := dev.read(srcPV, off, len(after)); !bytes.Equal(got, after) {
		t.Errorf("source lost its bytes after being cloned and snapshotted")
	}
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// blockIO reads and writes a volume the way a pod using it as a raw block
// device would, making the kubelet's CSI calls itself.
type blockIO struct {
	t   *testing.T
	d   *plugintest.Driver
	dir string
}

func (b *blockIO) write(pv *v1.PersistentVolume, off int64, data []byte) {
	b.with(pv, func(f *os.File) {
		if _, err := f.WriteAt(data, off); err != nil {
			b.t.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.t.Fatal(err)
		}
	})
}

// read returns n bytes at off and the device's size.
func (b *blockIO) read(pv *v1.PersistentVolume, off int64, n int) (data []byte, size int64) {
	data = make([]byte, n)
	b.with(pv, func(f *os.File) {
		if _, err := f.ReadAt(data, off); err != nil {
			b.t.Fatal(err)
		}
		var err error
		if size, err = f.Seek(0, io.SeekEnd); err != nil {
			b.t.Fatal(err)
		}
	})
	return data, size
}

// with publishes pv as a block device, runs fn on it and unpublishes again.
func (b *blockIO) with(pv *v1.PersistentVolume, fn func(*os.File)) {
	t, ctx, id := b.t, b.t.Context(), pv.Spec.CSI.VolumeHandle
	vc := &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER}}
	staging, target := filepath.Join(b.dir, "staging", pv.Name), filepath.Join(b.dir, "pods", pv.Name, "dev")
	for _, dir := range []string{staging, filepath.Dir(target)} {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			t.Fatal(err)
		}
	}
	ctrl, node := b.d.ControllerClient(), b.d.NodeClient()
	pub, err := ctrl.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: b.d.NodeID,
		VolumeCapability: vc, VolumeContext: pv.Spec.CSI.VolumeAttributes})
	if err != nil {
		t.Fatalf("ControllerPublishVolume %s: %v", id, err)
	}
	defer func() {
		if _, err := ctrl.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: id, NodeId: b.d.NodeID}); err != nil {
			t.Errorf("ControllerUnpublishVolume %s: %v", id, err)
		}
	}()
	pc := pub.GetPublishContext()
	if _, err := node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, PublishContext: pc, StagingTargetPath: staging,
		VolumeCapability: vc, VolumeContext: pv.Spec.CSI.VolumeAttributes}); err != nil {
		t.Fatalf("NodeStageVolume %s: %v", id, err)
	}
	defer func() {
		if _, err := node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging}); err != nil {
			t.Errorf("NodeUnstageVolume %s: %v", id, err)
		}
	}()
	if _, err := node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: id, PublishContext: pc, StagingTargetPath: staging,
		TargetPath: target, VolumeCapability: vc, VolumeContext: pv.Spec.CSI.VolumeAttributes}); err != nil {
		t.Fatalf("NodePublishVolume %s: %v", id, err)
	}
	defer func() {
		if _, err := node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target}); err != nil {
			t.Errorf("NodeUnpublishVolume %s: %v", id, err)
		}
	}()
	f, err := os.OpenFile(target, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fn(f)
}
