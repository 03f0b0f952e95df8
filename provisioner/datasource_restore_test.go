package provisioner

import (
	"context"
	"slices"
	"testing"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/csi-hub/csi-hub/provisioner/datasource"
	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// A claim restored from a VolumeSnapshot (real snapshot-controller, the hub's
// snapshotter) gets a volume created from the content's snapshotHandle, at
// the larger size it asked for; one smaller than restoreSize gets a Warning
// and no volume. The snapshot carries the provisioner's finalizer while a
// claim is pending on it, so deleting it waits, and loses the finalizer once
// the claims are provisioned or deleted.
func TestRestoreFromSnapshot(t *testing.T) {
	s := newSourceEnv(t, fakedriver.Options{})
	sc := s.storageClass("sc", withPolicy(v1.PersistentVolumeReclaimDelete))
	s.createPVC("data", sc.Name, "1Gi")
	s.waitBound("data")
	_, content := s.takeSnapshot("snap", "data", s.snapshotClass())
	handle := *content.Status.SnapshotHandle

	s.createPVC("small", sc.Name, "512Mi", fromSnapshot("snap"))
	s.waitEvent("small", reasonFailed, v1.EventTypeWarning, "smaller than the restoreSize 1Gi")

	gate := s.drv.Gate("CreateVolume")
	s.createPVC("big", sc.Name, "2Gi", fromSnapshot("snap"))
	if err := gate.WaitArrived(s.ctx); err != nil {
		t.Fatal(err)
	}
	if f := s.snapshotFinalizers("snap"); !slices.Contains(f, datasource.FinalizerSnapshotSource) {
		t.Errorf("snapshot finalizers during CreateVolume: %v, want %s", f, datasource.FinalizerSnapshotSource)
	}
	// Deleting the snapshot now must not pull it from under CreateVolume.
	if err := s.snaps.SnapshotV1().VolumeSnapshots(s.ns).Delete(s.ctx, "snap", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	released := time.Now()
	gate.Release()
	_, pv := s.waitBound("big")
	t.Logf("restored claim bound %s after its CreateVolume was let through", time.Since(released).Round(time.Millisecond))

	vol, ok := s.drv.Volume(pv.Spec.CSI.VolumeHandle)
	if !ok || vol.SourceSnapshotID != handle {
		t.Errorf("backend volume %+v, want one restored from snapshot %s", vol, handle)
	}
	if got := pv.Spec.Capacity[v1.ResourceStorage]; got.Cmp(resource.MustParse("2Gi")) < 0 {
		t.Errorf("PV capacity %s, want at least the 2Gi asked for", got.String())
	}
	for _, r := range s.createRequests(pv.Name) {
		if r.GetVolumeContentSource().GetSnapshot().GetSnapshotId() != handle {
			t.Errorf("CreateVolume content source %v, want snapshot %s", r.GetVolumeContentSource(), handle)
		}
	}
	s.requireNoVolume("small")
	// "small" is still pending on the snapshot: protection stays.
	if f := s.snapshotFinalizers("snap"); !slices.Contains(f, datasource.FinalizerSnapshotSource) {
		t.Errorf("snapshot finalizers with a claim still pending on it: %v, want %s", f, datasource.FinalizerSnapshotSource)
	}
	s.deletePVC("small")
	s.waitNoFinalizer("VolumeSnapshot snap", datasource.FinalizerSnapshotSource, func() []string { return s.snapshotFinalizers("snap") })
	s.eventually(60*time.Second, "the deleted VolumeSnapshot to go", func() (bool, error) {
		_, err := s.snaps.SnapshotV1().VolumeSnapshots(s.ns).Get(s.ctx, "snap", metav1.GetOptions{})
		return err != nil, nil
	})
}

// A claim whose snapshot does not exist yet, then is not ready, waits (a
// Warning each time, no volume) and is restored as soon as it is ready.
func TestRestoreWaitsForSnapshot(t *testing.T) {
	s := newSourceEnv(t, fakedriver.Options{SnapshotReadyAfter: time.Hour})
	sc := s.storageClass("sc", withPolicy(v1.PersistentVolumeReclaimDelete))
	s.createPVC("data", sc.Name, "1Gi")
	s.waitBound("data")

	s.createPVC("restored", sc.Name, "1Gi", fromSnapshot("later"))
	s.waitEvent("restored", reasonFailed, v1.EventTypeWarning, "VolumeSnapshot "+s.ns+"/later not found")
	s.createSnapshot("later", "data", s.snapshotClass())
	s.waitEvent("restored", reasonFailed, v1.EventTypeWarning, "is not ready to use yet")
	s.requireNoVolume("restored")
	if f := s.snapshotFinalizers("later"); slices.Contains(f, datasource.FinalizerSnapshotSource) {
		t.Errorf("unready snapshot got the protection finalizer: %v", f)
	}

	var handle string
	s.eventually(30*time.Second, "the snapshot handle", func() (bool, error) {
		vs, err := s.snaps.SnapshotV1().VolumeSnapshots(s.ns).Get(s.ctx, "later", metav1.GetOptions{})
		if err != nil || vs.Status == nil || vs.Status.BoundVolumeSnapshotContentName == nil {
			return false, nil
		}
		c, err := s.snaps.SnapshotV1().VolumeSnapshotContents().Get(s.ctx, *vs.Status.BoundVolumeSnapshotContentName, metav1.GetOptions{})
		if err != nil || c.Status == nil || c.Status.SnapshotHandle == nil {
			return false, nil
		}
		handle = *c.Status.SnapshotHandle
		return true, nil
	})
	if err := s.drv.SetSnapshotReady(handle, true); err != nil {
		t.Fatal(err)
	}
	s.waitSnapshotReady("later")
	ready := time.Now()
	_, pv := s.waitBound("restored")
	t.Logf("restored claim bound %s after its VolumeSnapshot became ready", time.Since(ready).Round(time.Millisecond))
	if vol, _ := s.drv.Volume(pv.Spec.CSI.VolumeHandle); vol.SourceSnapshotID != handle {
		t.Errorf("backend volume %+v, want one restored from %s", vol, handle)
	}
	s.waitNoFinalizer("VolumeSnapshot later", datasource.FinalizerSnapshotSource, func() []string { return s.snapshotFinalizers("later") })
}

// Refusals: a snapshot taken by another driver, and a volume mode change
// without the content's permission (granting it lets the restore proceed).
// Each gives a ProvisioningFailed Warning, no volume and no finalizer left.
func TestRestoreRefusals(t *testing.T) {
	s := newSourceEnv(t, fakedriver.Options{})
	sc := s.storageClass("sc", withPolicy(v1.PersistentVolumeReclaimDelete))
	s.createPVC("data", sc.Name, "1Gi")
	s.waitBound("data")
	_, content := s.takeSnapshot("snap", "data", s.snapshotClass())

	// A pre-provisioned snapshot of another driver, bound by the snapshot-controller.
	foreign := s.ns + "-foreign"
	fc := &snapv1.VolumeSnapshotContent{ObjectMeta: metav1.ObjectMeta{Name: foreign},
		Spec: snapv1.VolumeSnapshotContentSpec{Driver: "other.example.com", DeletionPolicy: snapv1.VolumeSnapshotContentRetain,
			Source:            snapv1.VolumeSnapshotContentSource{SnapshotHandle: ptr.To("other-handle")},
			VolumeSnapshotRef: v1.ObjectReference{Namespace: s.ns, Name: "foreign"}}}
	if _, err := s.snaps.SnapshotV1().VolumeSnapshotContents().Create(s.ctx, fc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = s.snaps.SnapshotV1().VolumeSnapshotContents().Delete(context.Background(), foreign, metav1.DeleteOptions{})
	})
	fvs := &snapv1.VolumeSnapshot{ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: "foreign"},
		Spec: snapv1.VolumeSnapshotSpec{Source: snapv1.VolumeSnapshotSource{VolumeSnapshotContentName: ptr.To(foreign)}}}
	if _, err := s.snaps.SnapshotV1().VolumeSnapshots(s.ns).Create(s.ctx, fvs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	s.createPVC("other", sc.Name, "1Gi", fromSnapshot("foreign"))
	s.waitEvent("other", reasonFailed, v1.EventTypeWarning, "was taken by driver other.example.com")

	if content.Spec.SourceVolumeMode == nil || *content.Spec.SourceVolumeMode != v1.PersistentVolumeFilesystem {
		t.Fatalf("content sourceVolumeMode %v, want Filesystem (set by the snapshot-controller)", content.Spec.SourceVolumeMode)
	}
	s.createPVC("raw", sc.Name, "1Gi", fromSnapshot("snap"), blockMode)
	s.waitEvent("raw", reasonFailed, v1.EventTypeWarning, "annotate VolumeSnapshotContent "+content.Name+" with "+datasource.AnnAllowVolumeModeChange)
	s.requireNoVolume("other")
	s.requireNoVolume("raw")
	if f := s.snapshotFinalizers("snap"); slices.Contains(f, datasource.FinalizerSnapshotSource) {
		t.Errorf("refused restore left finalizer on the snapshot: %v", f)
	}

	patch := []byte(`{"metadata":{"annotations":{"` + datasource.AnnAllowVolumeModeChange + `":"true"}}}`)
	if _, err := s.snaps.SnapshotV1().VolumeSnapshotContents().Patch(s.ctx, content.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	_, pv := s.waitBound("raw")
	if vol, _ := s.drv.Volume(pv.Spec.CSI.VolumeHandle); !vol.Block || vol.SourceSnapshotID != *content.Status.SnapshotHandle {
		t.Errorf("backend volume %+v, want a block volume restored from %s", vol, *content.Status.SnapshotHandle)
	}
	s.deletePVC("other")
	s.waitNoFinalizer("VolumeSnapshot snap", datasource.FinalizerSnapshotSource, func() []string { return s.snapshotFinalizers("snap") })
	if f := s.snapshotFinalizers("foreign"); slices.Contains(f, datasource.FinalizerSnapshotSource) {
		t.Errorf("foreign snapshot got the finalizer: %v", f)
	}
}

// The user deletes the VolumeSnapshot while a restore's CreateVolume is in
// flight, and csi-hub restarts (its memory of in-flight claims is gone): the
// protection finalizer on the snapshot lets the restore finish, so the PVC is
// not stuck Pending and the snapshot not stuck Terminating.
func TestRestoreFinishesAfterRestartWhileSnapshotDeleted(t *testing.T) {
	s := newSourceEnv(t, fakedriver.Options{})
	sc := s.storageClass("sc", withPolicy(v1.PersistentVolumeReclaimDelete))
	s.createPVC("data", sc.Name, "1Gi")
	s.waitBound("data")
	s.takeSnapshot("snap", "data", s.snapshotClass())

	gate := s.drv.Gate("CreateVolume")
	s.createPVC("restored", sc.Name, "1Gi", fromSnapshot("snap"))
	if err := gate.WaitArrived(s.ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.snaps.SnapshotV1().VolumeSnapshots(s.ns).Delete(s.ctx, "snap", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.hub.Stop(); err != nil {
		t.Fatal(err)
	}
	gate.Release()
	s.startHub()
	s.waitBound("restored")
	s.waitNoFinalizer("VolumeSnapshot snap", datasource.FinalizerSnapshotSource, func() []string { return s.snapshotFinalizers("snap") })
	s.eventually(60*time.Second, "the deleted VolumeSnapshot to go", func() (bool, error) {
		_, err := s.snaps.SnapshotV1().VolumeSnapshots(s.ns).Get(s.ctx, "snap", metav1.GetOptions{})
		return err != nil, nil
	})
}
