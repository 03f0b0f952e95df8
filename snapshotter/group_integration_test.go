package snapshotter_test

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	groupv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumegroupsnapshot/v1"
	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/csi-hub/csi-hub/internal/app"
	"github.com/csi-hub/csi-hub/internal/hub"
	"github.com/csi-hub/csi-hub/plugin"
	"github.com/csi-hub/csi-hub/plugin/plugintest"
	"github.com/csi-hub/csi-hub/plugin/transport/loop"
	"github.com/csi-hub/csi-hub/provisioner"
	"github.com/csi-hub/csi-hub/snapshotter"
	"github.com/csi-hub/csi-hub/test/cluster"
)

// groupEnv is a test world with the companion plugin (controller, group
// controller and node service with real loop devices) behind a hub running
// the snapshotter and the provisioner, with the real snapshot-controller.
type groupEnv struct {
	*env
	d     *plugintest.Driver
	sc    string
	devIO string // directory for staging and target paths
}

func newGroupEnv(t *testing.T, capacity int64) *groupEnv {
	if os.Geteuid() != 0 {
		t.Skip("SKIPPING: the companion driver's node service needs root for loop devices; run as root")
	}
	e := newBareEnv(t, cluster.Shared(t), "group")
	e.name = e.ns + ".block.csi-hub.io"
	nodeName := e.ns + "-storage"
	key := plugin.TopologyNodeKey(e.name)
	node, err := plugin.NewNodeServer(plugin.NodeConfig{DriverName: e.name, NodeID: nodeName, Initiator: loop.NewInitiator(),
		StateDir: t.TempDir(), Topology: map[string]string{key: nodeName}})
	if err != nil {
		t.Fatal(err)
	}
	d := plugintest.Start(t, plugintest.Options{DriverName: e.name, NodeID: nodeName, Capacity: capacity, Node: node})
	e.socket = d.SocketPath
	if _, err := e.c.Client.CoreV1().Nodes().Create(e.ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName,
		Labels: map[string]string{key: nodeName}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.c.Client.CoreV1().Nodes().Delete(e.ctx, nodeName, metav1.DeleteOptions{}) })
	if _, err := e.c.CreateCSINode(e.ctx, nodeName, e.name, nodeName, []string{key}); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.ExtraCreateMetadata = true
	e.startHub(cfg, func(h *hub.Hub) error {
		p, err := provisioner.New(e.t.Context(), app.ProvisionerDeps(h, provisioner.DefaultConfig()), provisioner.DefaultConfig())
		if err != nil {
			return err
		}
		h.Add(p)
		return nil
	})
	sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: e.ns + "-pool"}, Provisioner: e.name,
		ReclaimPolicy: ptr.To(corev1.PersistentVolumeReclaimDelete)}
	if _, err := e.c.Client.StorageV1().StorageClasses().Create(e.ctx, sc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.c.Client.StorageV1().StorageClasses().Delete(e.ctx, sc.Name, metav1.DeleteOptions{}) })
	return &groupEnv{env: e, d: d, sc: sc.Name, devIO: t.TempDir()}
}

// claim creates a block PVC (from dataSource, when given) and waits until bound.
func (g *groupEnv) claim(name, size string, labels map[string]string, dataSource *corev1.TypedLocalObjectReference) *corev1.PersistentVolume {
	g.t.Helper()
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: g.ns, Name: name, Labels: labels},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: ptr.To(g.sc),
			VolumeMode:       ptr.To(corev1.PersistentVolumeBlock),
			DataSource:       dataSource,
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceStorage: resource.MustParse(size)}},
		},
	}
	if _, err := g.c.Client.CoreV1().PersistentVolumeClaims(g.ns).Create(g.ctx, pvc, metav1.CreateOptions{}); err != nil {
		g.t.Fatal(err)
	}
	var pvName string
	g.poll(time.Minute, "PVC "+name+" to bind", func() (bool, error) {
		got, err := g.c.Client.CoreV1().PersistentVolumeClaims(g.ns).Get(g.ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		pvName = got.Spec.VolumeName
		return got.Status.Phase == corev1.ClaimBound, nil
	})
	pv, err := g.c.Client.CoreV1().PersistentVolumes().Get(g.ctx, pvName, metav1.GetOptions{})
	if err != nil {
		g.t.Fatal(err)
	}
	return pv
}

func (g *groupEnv) write(pv *corev1.PersistentVolume, off int64, data []byte) {
	g.d.WithBlockDevice(g.t, pv.Spec.CSI.VolumeHandle, pv.Spec.CSI.VolumeAttributes, g.devIO, func(f *os.File) {
		if _, err := f.WriteAt(data, off); err != nil {
			g.t.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			g.t.Fatal(err)
		}
	})
}

func (g *groupEnv) read(pv *corev1.PersistentVolume, off int64, n int) []byte {
	out := make([]byte, n)
	g.d.WithBlockDevice(g.t, pv.Spec.CSI.VolumeHandle, pv.Spec.CSI.VolumeAttributes, g.devIO, func(f *os.File) {
		if _, err := f.ReadAt(out, off); err != nil {
			g.t.Fatal(err)
		}
	})
	return out
}

func (g *groupEnv) groupClass(suffix string, policy snapv1.DeletionPolicy) string {
	g.t.Helper()
	name := g.ns + "-" + suffix
	cls := &groupv1.VolumeGroupSnapshotClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Driver: g.name, DeletionPolicy: policy}
	if _, err := g.snaps.GroupsnapshotV1().VolumeGroupSnapshotClasses().Create(g.ctx, cls, metav1.CreateOptions{}); err != nil {
		g.t.Fatal(err)
	}
	g.t.Cleanup(func() {
		_ = g.snaps.GroupsnapshotV1().VolumeGroupSnapshotClasses().Delete(g.ctx, name, metav1.DeleteOptions{})
	})
	return name
}

func (g *groupEnv) groupSnapshot(name, class string, selector map[string]string) {
	g.t.Helper()
	vgs := &groupv1.VolumeGroupSnapshot{ObjectMeta: metav1.ObjectMeta{Namespace: g.ns, Name: name},
		Spec: groupv1.VolumeGroupSnapshotSpec{VolumeGroupSnapshotClassName: ptr.To(class),
			Source: groupv1.VolumeGroupSnapshotSource{Selector: &metav1.LabelSelector{MatchLabels: selector}}}}
	if _, err := g.snaps.GroupsnapshotV1().VolumeGroupSnapshots(g.ns).Create(g.ctx, vgs, metav1.CreateOptions{}); err != nil {
		g.t.Fatal(err)
	}
}

// groupBoundFinalizer is the snapshot-controller's finalizer on a bound
// VolumeGroupSnapshot (external-snapshotter pkg/utils VolumeGroupSnapshotBoundFinalizer).
const groupBoundFinalizer = "groupsnapshot.storage.kubernetes.io/volumegroupsnapshot-bound-protection"

// waitGroupReady waits for the VolumeGroupSnapshot to be readyToUse and
// returns its content.

func (g *groupEnv) waitGroupReady(name string, timeout time.Duration) *groupv1.VolumeGroupSnapshotContent {
	g.t.Helper()
	var vgs *groupv1.VolumeGroupSnapshot
	// Ready and bound, with the snapshot-controller's bound finalizer: it adds
	// that finalizer in a later sync than the status, and a VolumeGroupSnapshot
	// deleted before it has it goes at once, so the snapshot-controller never
	// marks the content being-deleted and neither csi-hub nor csi-snapshotter
	// may release it (external-snapshotter v8.7 processGroupSnapshotWithDeletionTimestamp).
	g.poll(timeout, "VolumeGroupSnapshot "+name+" to be readyToUse and bound", func() (bool, error) {
		var err error
		vgs, err = g.snaps.GroupsnapshotV1().VolumeGroupSnapshots(g.ns).Get(g.ctx, name, metav1.GetOptions{})
		return err == nil && vgs.Status != nil && ptr.Deref(vgs.Status.ReadyToUse, false) && vgs.Status.BoundVolumeGroupSnapshotContentName != nil &&
			slices.Contains(vgs.Finalizers, groupBoundFinalizer), err
	})
	content, err := g.snaps.GroupsnapshotV1().VolumeGroupSnapshotContents().Get(g.ctx, *vgs.Status.BoundVolumeGroupSnapshotContentName, metav1.GetOptions{})
	if err != nil {
		g.t.Fatal(err)
	}
	return content
}

// members returns the member VolumeSnapshots of the group by source PVC, once
// all n are ready.
func (g *groupEnv) members(group string, n int) map[string]*snapv1.VolumeSnapshot {
	g.t.Helper()
	out := map[string]*snapv1.VolumeSnapshot{}
	g.poll(time.Minute, fmt.Sprintf("%d ready member VolumeSnapshots of %s", n, group), func() (bool, error) {
		list, err := g.snaps.SnapshotV1().VolumeSnapshots(g.ns).List(g.ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		clear(out)
		for i := range list.Items {
			vs := &list.Items[i]
			owned := slices.ContainsFunc(vs.OwnerReferences, func(o metav1.OwnerReference) bool { return o.Kind == "VolumeGroupSnapshot" && o.Name == group })
			if owned && vs.Status != nil && ptr.Deref(vs.Status.ReadyToUse, false) {
				out[ptr.Deref(vs.Spec.Source.PersistentVolumeClaimName, "")] = vs
			}
		}
		return len(out) == n, nil
	})
	return out
}

func (g *groupEnv) deleteGroupSnapshot(name string) {
	g.t.Helper()
	if err := g.snaps.GroupsnapshotV1().VolumeGroupSnapshots(g.ns).Delete(g.ctx, name, metav1.DeleteOptions{}); err != nil {
		g.t.Fatal(err)
	}
	// The snapshot-controller deletes the members first, one by one.
	g.poll(3*time.Minute, "VolumeGroupSnapshot "+name+" to be deleted", func() (bool, error) {
		_, err := g.snaps.GroupsnapshotV1().VolumeGroupSnapshots(g.ns).Get(g.ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
}

func (g *groupEnv) waitGroupContentGone(name string, timeout time.Duration) {
	g.t.Helper()
	g.poll(timeout, "VolumeGroupSnapshotContent "+name+" to be deleted", func() (bool, error) {
		c, err := g.snaps.GroupsnapshotV1().VolumeGroupSnapshotContents().Get(g.ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		if err == nil {
			// Reported as the last error on timeout: what holds the content.
			err = fmt.Errorf("still there: deletionTimestamp %v, finalizers %v, annotations %v, status %+v",
				c.DeletionTimestamp, c.Finalizers, c.Annotations, c.Status)
		}
		return false, err
	})
}

// backendGroup asks the plugin for a group snapshot: its members, or nil
// when it does not exist.
func (g *groupEnv) backendGroup(id string) []string {
	g.t.Helper()
	rsp, err := g.d.GroupControllerClient().GetVolumeGroupSnapshot(g.ctx, &csi.GetVolumeGroupSnapshotRequest{GroupSnapshotId: id})
	if err != nil {
		if strings.Contains(err.Error(), "NotFound") {
			return nil
		}
		g.t.Fatal(err)
	}
	var ids []string
	for _, s := range rsp.GetGroupSnapshot().GetSnapshots() {
		ids = append(ids, s.GetSnapshotId())
	}
	return ids
}

// TestGroupSnapshotEndToEnd: a VolumeGroupSnapshot selecting three labelled
// PVCs of the companion plugin becomes ready with three member
// VolumeSnapshots; each member restores into a new PVC holding the bytes
// written (through real loop block devices) before the group snapshot; a
// pool too full for the group first surfaces as a Warning event and a status
// error, then succeeds on retry once space is freed; deleting the group
// removes the backend group and its members; with Retain they stay.
func TestGroupSnapshotEndToEnd(t *testing.T) {
	const mib = 1 << 20
	g := newGroupEnv(t, 160*mib)
	labels := map[string]string{"app": "db"}
	pvs := map[string]*corev1.PersistentVolume{}
	before := map[string][]byte{}
	const off = 2 * mib
	for _, name := range []string{"data", "log", "index"} {
		pvs[name] = g.claim(name, "16Mi", labels, nil)
		before[name] = make([]byte, 64<<10)
		if _, err := rand.Read(before[name]); err != nil {
			t.Fatal(err)
		}
		g.write(pvs[name], off, before[name])
	}
	// Fill the pool so the group's 48Mi do not fit: the driver says ResourceExhausted.
	filler, err := g.d.ControllerClient().CreateVolume(g.ctx, &csi.CreateVolumeRequest{Name: g.ns + "-filler",
		CapacityRange: &csi.CapacityRange{RequiredBytes: 80 * mib},
		VolumeCapabilities: []*csi.VolumeCapability{{AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
			AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}}}})
	if err != nil {
		t.Fatal(err)
	}

	class := g.groupClass("delete", snapv1.VolumeSnapshotContentDelete)
	began := time.Now()
	g.groupSnapshot("backup", class, labels)
	var contentName string
	g.poll(time.Minute, "the group content to report the driver's error", func() (bool, error) {
		vgs, err := g.snaps.GroupsnapshotV1().VolumeGroupSnapshots(g.ns).Get(g.ctx, "backup", metav1.GetOptions{})
		if err != nil || vgs.Status == nil || vgs.Status.BoundVolumeGroupSnapshotContentName == nil {
			return false, err
		}
		contentName = *vgs.Status.BoundVolumeGroupSnapshotContentName
		c, err := g.snaps.GroupsnapshotV1().VolumeGroupSnapshotContents().Get(g.ctx, contentName, metav1.GetOptions{})
		return err == nil && c.Status != nil && c.Status.Error != nil && strings.Contains(ptr.Deref(c.Status.Error.Message, ""), "pool is full"), err
	})
	g.poll(30*time.Second, "a Warning event on the group content", func() (bool, error) {
		return hasPrefix(g.events(contentName), "Warning GroupSnapshotCreationFailed: Failed to create group snapshot"), nil
	})
	if _, err := g.d.ControllerClient().DeleteVolume(g.ctx, &csi.DeleteVolumeRequest{VolumeId: filler.GetVolume().GetVolumeId()}); err != nil {
		t.Fatal(err)
	}
	content := g.waitGroupReady("backup", time.Minute)
	t.Logf("group snapshot of 3 volumes ready %s after creation (including a failed first attempt)", time.Since(began).Round(time.Millisecond))
	st := content.Status
	if st.Error != nil || len(st.VolumeSnapshotInfoList) != 3 || st.CreationTime == nil {
		t.Fatalf("group content status %+v", st)
	}
	if _, ok := content.Annotations[snapshotter.AnnGroupBeingCreated]; ok {
		t.Error("being-created annotation left on a ready group content")
	}
	handle := *st.VolumeGroupSnapshotHandle
	backendMembers := g.backendGroup(handle)
	if len(backendMembers) != 3 {
		t.Fatalf("backend group %s has members %v", handle, backendMembers)
	}
	members := g.members("backup", 3)

	// The sources move on; the members must not.
	for name, pv := range pvs {
		g.write(pv, off, bytes.Repeat([]byte{0xee}, len(before[name])))
	}
	for name, vs := range members {
		restored := g.claim("restored-"+name, "16Mi", nil, &corev1.TypedLocalObjectReference{
			APIGroup: ptr.To(snapv1.GroupName), Kind: "VolumeSnapshot", Name: vs.Name})
		if got := g.read(restored, off, len(before[name])); !bytes.Equal(got, before[name]) {
			t.Errorf("member %s restored into a new PVC does not hold the bytes written before the group snapshot", name)
		}
	}

	g.deleteGroupSnapshot("backup")
	g.waitGroupContentGone(content.Name, time.Minute)
	if left := g.backendGroup(handle); left != nil {
		t.Errorf("backend group %s still there after deleting the VolumeGroupSnapshot: %v", handle, left)
	}
	for _, id := range backendMembers {
		if _, err := os.Stat(filepath.Join(g.d.PoolDir, id+".img")); !os.IsNotExist(err) {
			t.Errorf("member snapshot file %s still there: %v", id, err)
		}
	}

	// Retain: deleting the VolumeGroupSnapshot and its content keeps the backend group.
	retain := g.groupClass("retain", snapv1.VolumeSnapshotContentRetain)
	g.groupSnapshot("kept", retain, labels)
	kept := g.waitGroupReady("kept", time.Minute)
	keptHandle := *kept.Status.VolumeGroupSnapshotHandle
	g.deleteGroupSnapshot("kept")
	if err := g.snaps.GroupsnapshotV1().VolumeGroupSnapshotContents().Delete(g.ctx, kept.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	g.waitGroupContentGone(kept.Name, time.Minute)
	if ids := g.backendGroup(keptHandle); len(ids) != 3 {
		t.Errorf("Retain: backend group %s has members %v after its objects went, want 3", keptHandle, ids)
	}
	if _, err := g.d.GroupControllerClient().DeleteVolumeGroupSnapshot(g.ctx, &csi.DeleteVolumeGroupSnapshotRequest{GroupSnapshotId: keptHandle}); err != nil {
		t.Fatal(err)
	}
}
