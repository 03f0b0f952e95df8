//go:build vmguest

package guest

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"

	"github.com/csi-hub/csi-hub/plugin/transport/nvme"
)

const mib = int64(1) << 20

func mountCap(fsType string) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: fsType}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
}

func blockCap() *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
}

// attachment is one volume staged and published on the VM's node.
type attachment struct {
	id, staging, target string
	vc                  *csi.VolumeCapability
	pc                  map[string]string
}

func (d *driver) attach(ctx context.Context, id string, vc *csi.VolumeCapability, base string) *attachment {
	t := d.t
	t.Helper()
	a := &attachment{id: id, vc: vc, staging: filepath.Join(base, "staging", id), target: filepath.Join(base, "target", id)}
	pub, err := d.cc.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: d.hostNQN, VolumeCapability: vc})
	if err != nil {
		t.Fatalf("ControllerPublishVolume %s: %v", id, err)
	}
	a.pc = pub.GetPublishContext()
	for _, k := range []string{nvme.KeyTraddr, nvme.KeyTrsvcid, nvme.KeyNQN, nvme.KeySerial} {
		if a.pc[k] == "" {
			t.Fatalf("publish context %v lacks %s", a.pc, k)
		}
	}
	start := time.Now()
	if _, err := d.nc.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, PublishContext: a.pc,
		StagingTargetPath: a.staging, VolumeCapability: vc}); err != nil {
		t.Fatalf("NodeStageVolume %s: %v", id, err)
	}
	t.Logf("staged %s in %v", id, time.Since(start).Round(time.Millisecond))
	if _, err := d.nc.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: id, PublishContext: a.pc,
		StagingTargetPath: a.staging, TargetPath: a.target, VolumeCapability: vc}); err != nil {
		t.Fatalf("NodePublishVolume %s: %v", id, err)
	}
	return a
}

func (d *driver) detach(ctx context.Context, a *attachment) {
	t := d.t
	t.Helper()
	if _, err := d.nc.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: a.id, TargetPath: a.target}); err != nil {
		t.Fatalf("NodeUnpublishVolume %s: %v", a.id, err)
	}
	if _, err := d.nc.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: a.id, StagingTargetPath: a.staging}); err != nil {
		t.Fatalf("NodeUnstageVolume %s: %v", a.id, err)
	}
	if _, err := d.cc.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: a.id, NodeId: d.hostNQN}); err != nil {
		t.Fatalf("ControllerUnpublishVolume %s: %v", a.id, err)
	}
	if allowed := entries(t, filepath.Join(nvmetRoot, "subsystems", nvme.SubsystemNQN(a.id), "allowed_hosts")); len(allowed) > 0 {
		t.Errorf("volume %s still allows %v after unpublish", a.id, allowed)
	}
}

func (d *driver) createVolume(ctx context.Context, name string, size int64, vc *csi.VolumeCapability, src *csi.VolumeContentSource) *csi.Volume {
	t := d.t
	t.Helper()
	resp, err := d.cc.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: name, VolumeCapabilities: []*csi.VolumeCapability{vc},
		CapacityRange: &csi.CapacityRange{RequiredBytes: size}, VolumeContentSource: src,
		AccessibilityRequirements: &csi.TopologyRequirement{Requisite: []*csi.Topology{{Segments: map[string]string{zoneKey: zoneValue}}}}})
	if err != nil {
		t.Fatalf("CreateVolume %s: %v", name, err)
	}
	v := resp.GetVolume()
	if top := v.GetAccessibleTopology(); len(top) != 1 || top[0].GetSegments()[zoneKey] != zoneValue {
		t.Errorf("volume %s topology %v, want %s=%s", v.GetVolumeId(), top, zoneKey, zoneValue)
	}
	if _, err := os.Stat(filepath.Join(nvmetRoot, "subsystems", nvme.SubsystemNQN(v.GetVolumeId()))); err != nil {
		t.Errorf("volume %s is not exported: %v", v.GetVolumeId(), err)
	}
	return v
}

// TestCSIFlow drives the plugin's gRPC API with the nvme transport through a
// volume's life for ext4 and for xfs (>= 300 MiB, mkfs.xfs's minimum):
// create, publish, stage, publish, write, unpublish/unstage, stage again, data
// still there, expand, snapshot, restore, read, delete; then a raw block
// volume, a controller restart on a wiped configfs, and a stage against an
// unreachable target. Afterwards configfs, /sys/class/nvme and /proc/mounts
// must be clean.
func TestCSIFlow(t *testing.T) {
	requireVM(t)
	ctx := context.Background()
	base := "/tmp/csi"
	d := startDriver(t, base)

	info, err := d.nc.NodeGetInfo(ctx, &csi.NodeGetInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if info.GetNodeId() != d.hostNQN || info.GetAccessibleTopology().GetSegments()[zoneKey] != zoneValue {
		t.Fatalf("NodeGetInfo %v: want node ID %s and %s=%s", info, d.hostNQN, zoneKey, zoneValue)
	}

	for _, tc := range []struct {
		fs         string
		size, grow int64
	}{{"ext4", 64 * mib, 128 * mib}, {"xfs", 320 * mib, 400 * mib}} {
		t.Run(tc.fs, func(t *testing.T) {
			d.t = t
			defer func() { d.t = nil }()
			lifecycle(ctx, t, d, base, tc.fs, tc.size, tc.grow)
		})
	}
	d.t = t
	if t.Failed() {
		return
	}

	t.Run("block", func(t *testing.T) {
		d.t = t
		vc := blockCap()
		vol := d.createVolume(ctx, "flow-block", 16*mib, vc, nil)
		other := d.createVolume(ctx, "flow-block-other", 16*mib, vc, nil)
		a := d.attach(ctx, vol.GetVolumeId(), vc, base)
		b := d.attach(ctx, other.GetVolumeId(), vc, base)
		if n := len(nvmeControllers(t)); n != 2 {
			t.Fatalf("%d NVMe controllers with two volumes staged, want 2", n)
		}
		payload := randomBytes(t, 4096)
		writeAt(t, a.target, payload, 8*mib)
		writeAt(t, b.target, payload, 0)
		d.detach(ctx, a)
		// Unstage disconnects only its own subsystem.
		if n := len(nvmeControllers(t)); n != 1 {
			t.Fatalf("%d NVMe controllers after unstaging one of two volumes, want 1", n)
		}
		// Drop the page cache so the read goes over NVMe/TCP to the target.
		if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0); err != nil {
			t.Fatal(err)
		}
		if got := readAt(t, b.target, len(payload), 0); !bytes.Equal(got, payload) {
			t.Error("the other volume's data changed when the first was unstaged")
		}
		d.detach(ctx, b)
		d.deleteVolume(ctx, other.GetVolumeId())
		a = d.attach(ctx, vol.GetVolumeId(), vc, base)
		if got := readAt(t, a.target, len(payload), 8*mib); !bytes.Equal(got, payload) {
			t.Error("raw block data changed across unstage/stage")
		}
		// Expanding a raw block volume: the target grows the namespace, the
		// node rescans; the published device node shows the new size.
		if _, err := d.cc.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{VolumeId: vol.GetVolumeId(),
			CapacityRange: &csi.CapacityRange{RequiredBytes: 32 * mib}, VolumeCapability: vc}); err != nil {
			t.Fatalf("ControllerExpandVolume: %v", err)
		}
		if _, err := d.nc.NodeExpandVolume(ctx, &csi.NodeExpandVolumeRequest{VolumeId: vol.GetVolumeId(), VolumePath: a.target,
			StagingTargetPath: a.staging, CapacityRange: &csi.CapacityRange{RequiredBytes: 32 * mib}, VolumeCapability: vc}); err != nil {
			t.Fatalf("NodeExpandVolume: %v", err)
		}
		if size := deviceSize(t, a.target); size != 32*mib {
			t.Errorf("block volume is %d bytes after expansion, want %d", size, 32*mib)
		}
		d.detach(ctx, a)
		d.deleteVolume(ctx, vol.GetVolumeId())
	})
	d.t = t

	t.Run("restart-rebuilds-exports", func(t *testing.T) {
		d.t = t
		vol := d.createVolume(ctx, "flow-restart", 16*mib, mountCap("ext4"), nil)
		id := vol.GetVolumeId()
		d.stop()
		// A reboot of the storage host empties configfs; stand in for it.
		wipeExport(t, id)
		if left := entries(t, filepath.Join(nvmetRoot, "subsystems")); len(left) > 0 {
			t.Fatalf("configfs not wiped: %v", left)
		}
		d.start()
		if _, err := os.Stat(filepath.Join(nvmetRoot, "subsystems", nvme.SubsystemNQN(id), "namespaces", "1")); err != nil {
			t.Fatalf("restart did not rebuild the export of %s: %v", id, err)
		}
		a := d.attach(ctx, id, mountCap("ext4"), base)
		d.detach(ctx, a)
		d.deleteVolume(ctx, id)
	})
	d.t = t

	t.Run("storage-host-restart-while-staged", func(t *testing.T) {
		d.t = t
		vc := mountCap("ext4")
		vol := d.createVolume(ctx, "flow-reboot", 16*mib, vc, nil)
		id := vol.GetVolumeId()
		a := d.attach(ctx, id, vc, base)
		before := randomBytes(t, 64<<10)
		writeSynced(t, filepath.Join(a.target, "before"), before)
		// Stand in for a storage-host reboot under a connected node: the plugin
		// stops and configfs loses the export and the grant. The node's
		// controller drops and keeps reconnecting.
		d.stop()
		wipeExport(t, id)
		d.start()
		// The restarted controller must re-export and re-grant from its store,
		// so the node's reconnect gets in and I/O resumes.
		ctrl := nvmeControllers(t)
		if len(ctrl) != 1 {
			t.Fatalf("NVMe controllers %v, want the staged volume's one", ctrl)
		}
		state := waitState(t, ctrl[0], "live", 30*time.Second)
		t.Logf("controller %s is %s again after the target came back", ctrl[0], state)
		after := randomBytes(t, 64<<10)
		writeSynced(t, filepath.Join(a.target, "after"), after)
		d.detach(ctx, a)
		a = d.attach(ctx, id, vc, base)
		for name, want := range map[string][]byte{"before": before, "after": after} {
			if got, err := os.ReadFile(filepath.Join(a.target, name)); err != nil || !bytes.Equal(got, want) {
				t.Errorf("file %s after the target restart: %d bytes, %v", name, len(got), err)
			}
		}
		d.detach(ctx, a)
		d.deleteVolume(ctx, id)
	})
	d.t = t

	t.Run("unreachable-target", func(t *testing.T) {
		d.t = t
		vc := mountCap("ext4")
		vol := d.createVolume(ctx, "flow-unreachable", 16*mib, vc, nil)
		pub, err := d.cc.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: vol.GetVolumeId(), NodeId: d.hostNQN, VolumeCapability: vc})
		if err != nil {
			t.Fatal(err)
		}
		pc := clone(pub.GetPublishContext())
		pc[nvme.KeyTrsvcid] = "4999"
		_, err = d.nc.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: vol.GetVolumeId(), PublishContext: pc,
			StagingTargetPath: filepath.Join(base, "staging", vol.GetVolumeId()), VolumeCapability: vc})
		if err == nil {
			t.Fatal("stage against a port nothing listens on succeeded")
		}
		t.Logf("expected error: %v", err)
		for _, s := range []string{"127.0.0.1:4999", nvme.SubsystemNQN(vol.GetVolumeId())} {
			if !bytes.Contains([]byte(err.Error()), []byte(s)) {
				t.Errorf("error does not name %s", s)
			}
		}
		if left := nvmeControllers(t); len(left) > 0 {
			t.Errorf("failed stage left %v connected", left)
		}
		if _, err := d.cc.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: vol.GetVolumeId(), NodeId: d.hostNQN}); err != nil {
			t.Fatal(err)
		}
		d.deleteVolume(ctx, vol.GetVolumeId())
	})
	d.t = t
	assertClean(t, base)
}

func lifecycle(ctx context.Context, t *testing.T, d *driver, base, fs string, size, grow int64) {
	vc := mountCap(fs)
	vol := d.createVolume(ctx, "flow-"+fs, size, vc, nil)
	id := vol.GetVolumeId()
	// The pool is on ext4: nvmet must use direct I/O, the production path.
	if b, _ := os.ReadFile(filepath.Join(nvmetRoot, "subsystems", nvme.SubsystemNQN(id), "namespaces", "1", "buffered_io")); string(bytes.TrimSpace(b)) != "0" {
		t.Errorf("buffered_io of %s on an ext4 pool is %q, want 0", id, b)
	}
	a := d.attach(ctx, id, vc, base)
	payload := randomBytes(t, 256<<10)
	if err := os.WriteFile(filepath.Join(a.target, "payload"), payload, 0o644); err != nil {
		t.Fatal(err)
	}
	d.detach(ctx, a)
	if left := nvmeControllers(t); len(left) > 0 {
		t.Fatalf("unstage left %v connected", left)
	}

	a = d.attach(ctx, id, vc, base)
	if got, err := os.ReadFile(filepath.Join(a.target, "payload")); err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("data after unstage/stage: %d bytes, %v", len(got), err)
	}

	before := statfsBytes(t, a.target)
	exp, err := d.cc.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{VolumeId: id,
		CapacityRange: &csi.CapacityRange{RequiredBytes: grow}, VolumeCapability: vc})
	if err != nil {
		t.Fatalf("ControllerExpandVolume: %v", err)
	}
	if !exp.GetNodeExpansionRequired() {
		t.Error("ControllerExpandVolume of a filesystem volume did not ask for node expansion")
	}
	if _, err := d.nc.NodeExpandVolume(ctx, &csi.NodeExpandVolumeRequest{VolumeId: id, VolumePath: a.target,
		StagingTargetPath: a.staging, CapacityRange: &csi.CapacityRange{RequiredBytes: grow}, VolumeCapability: vc}); err != nil {
		t.Fatalf("NodeExpandVolume: %v", err)
	}
	after := statfsBytes(t, a.target)
	t.Logf("%s filesystem grew from %d to %d bytes", fs, before, after)
	if after-before < (grow-size)*8/10 {
		t.Errorf("%s filesystem grew by %d bytes, want about %d", fs, after-before, grow-size)
	}

	unix.Sync()
	snap, err := d.cc.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{SourceVolumeId: id, Name: "snap-" + fs})
	if err != nil {
		t.Fatalf("CreateSnapshot: %v", err)
	}
	if !snap.GetSnapshot().GetReadyToUse() {
		t.Fatalf("snapshot %v not ready", snap.GetSnapshot())
	}
	// Two xfs filesystems with one UUID cannot be mounted at once: release the
	// source before mounting its copy.
	d.detach(ctx, a)

	restored := d.createVolume(ctx, "flow-"+fs+"-restored", grow, vc, &csi.VolumeContentSource{
		Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: snap.GetSnapshot().GetSnapshotId()}}})
	r := d.attach(ctx, restored.GetVolumeId(), vc, base)
	if got, err := os.ReadFile(filepath.Join(r.target, "payload")); err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("data in the volume restored from the snapshot: %d bytes, %v", len(got), err)
	}
	d.detach(ctx, r)

	if _, err := d.cc.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: snap.GetSnapshot().GetSnapshotId()}); err != nil {
		t.Fatalf("DeleteSnapshot: %v", err)
	}
	d.deleteVolume(ctx, restored.GetVolumeId())
	d.deleteVolume(ctx, id)
}

func (d *driver) deleteVolume(ctx context.Context, id string) {
	t := d.t
	t.Helper()
	if _, err := d.cc.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id}); err != nil {
		t.Fatalf("DeleteVolume %s: %v", id, err)
	}
	if _, err := os.Stat(filepath.Join(nvmetRoot, "subsystems", nvme.SubsystemNQN(id))); !os.IsNotExist(err) {
		t.Errorf("deleted volume %s is still exported (%v)", id, err)
	}
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func statfsBytes(t *testing.T, path string) int64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Blocks) * st.Bsize
}

func writeAt(t *testing.T, path string, b []byte, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

// readAt reads from a device attached afresh, whose page cache is empty, so
// the bytes come from the target.
func readAt(t *testing.T, path string, n int, off int64) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, off); err != nil {
		t.Fatal(err)
	}
	return buf
}

func writeSynced(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync %s: %v", path, err)
	}
}

// waitState waits until NVMe controller ctrl reports want (live, connecting...).
func waitState(t *testing.T, ctrl, want string, timeout time.Duration) string {
	t.Helper()
	var state string
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		b, _ := os.ReadFile(filepath.Join("/sys/class/nvme", ctrl, "state"))
		if state = string(bytes.TrimSpace(b)); state == want {
			return state
		}
	}
	t.Fatalf("NVMe controller %s is %q after %v, want %s", ctrl, state, timeout, want)
	return state
}

// deviceSize is the size of the block device at path (a device node or a
// publish target bind-mounted over one), by seeking to its end.
func deviceSize(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		t.Fatal(err)
	}
	return size
}
