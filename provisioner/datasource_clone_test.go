package provisioner

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"

	"github.com/csi-hub/csi-hub/provisioner/datasource"
	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// A clone gets volume_content_source.volume = the source PV's handle, at the
// larger size it asked for. Deleting the source while the clone's
// CreateVolume is in flight waits (cloning-protection) until the clone is
// provisioned; then the source goes.
func TestCloneProtectsSource(t *testing.T) {
	s := newSourceEnv(t, fakedriver.Options{})
	sc := s.storageClass("sc", withPolicy(v1.PersistentVolumeReclaimDelete))
	s.createPVC("src", sc.Name, "1Gi")
	_, srcPV := s.waitBound("src")

	gate := s.drv.Gate("CreateVolume")
	s.createPVC("copy", sc.Name, "2Gi", fromClaim("src"))
	if err := gate.WaitArrived(s.ctx); err != nil {
		t.Fatal(err)
	}
	if f := s.claimFinalizers("src"); !slices.Contains(f, datasource.FinalizerCloneSource) {
		t.Errorf("source finalizers during the clone's CreateVolume: %v, want %s", f, datasource.FinalizerCloneSource)
	}
	s.deletePVC("src")
	time.Sleep(time.Second) // give kube-controller-manager the chance to remove it
	src, err := s.kube.CoreV1().PersistentVolumeClaims(s.ns).Get(s.ctx, "src", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("source PVC went away while its clone was in flight: %v", err)
	}
	if src.DeletionTimestamp == nil {
		t.Errorf("source PVC not marked for deletion")
	}
	released := time.Now()
	gate.Release()
	_, pv := s.waitBound("copy")
	t.Logf("clone bound %s after its CreateVolume was let through", time.Since(released).Round(time.Millisecond))

	vol, _ := s.drv.Volume(pv.Spec.CSI.VolumeHandle)
	if vol.SourceVolumeID != srcPV.Spec.CSI.VolumeHandle {
		t.Errorf("backend volume %+v, want a clone of %s", vol, srcPV.Spec.CSI.VolumeHandle)
	}
	if got := pv.Spec.Capacity[v1.ResourceStorage]; got.Cmp(resource.MustParse("2Gi")) < 0 {
		t.Errorf("clone PV capacity %s, want at least 2Gi", got.String())
	}
	s.eventually(60*time.Second, "the source PVC to be deleted after its clone finished", func() (bool, error) {
		_, err := s.kube.CoreV1().PersistentVolumeClaims(s.ns).Get(s.ctx, "src", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	s.waitPVGone(srcPV.Name)
}

// Clone refusals (smaller than the source, source of another driver, source
// not bound, volume mode change) give a ProvisioningFailed Warning and no
// volume; a clone into another StorageClass of the same driver works. The
// cloning-protection finalizer stays while any clone is pending and goes
// when the last one is provisioned or deleted.
func TestCloneRefusals(t *testing.T) {
	s := newSourceEnv(t, fakedriver.Options{})
	sc := s.storageClass("sc", withPolicy(v1.PersistentVolumeReclaimDelete))
	other := s.storageClass("other", withPolicy(v1.PersistentVolumeReclaimDelete))
	s.createPVC("src", sc.Name, "1Gi")
	_, srcPV := s.waitBound("src")

	s.createPVC("small", sc.Name, "512Mi", fromClaim("src"))
	s.waitEvent("small", reasonFailed, v1.EventTypeWarning, "smaller than the source PVC "+s.ns+"/src (1Gi)")
	s.createPVC("raw", sc.Name, "1Gi", fromClaim("src"), blockMode)
	s.waitEvent("raw", reasonFailed, v1.EventTypeWarning, "spec.volumeMode Block differs from the source PVC")
	if f := s.claimFinalizers("src"); slices.Contains(f, datasource.FinalizerCloneSource) {
		t.Errorf("refused clones left %s on the source: %v", datasource.FinalizerCloneSource, f)
	}

	// A source bound to a PV of another driver (statically; the test marks
	// the pair Bound as kube-controller-manager would, only sooner).
	foreign := s.createPVC("foreign", "manual", "1Gi", func(p *v1.PersistentVolumeClaim) { p.Spec.VolumeName = s.ns + "-foreign" })
	foreignPV := &v1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: s.ns + "-foreign"},
		Spec: v1.PersistentVolumeSpec{
			Capacity:               v1.ResourceList{v1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:            []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce},
			StorageClassName:       "manual",
			PersistentVolumeSource: v1.PersistentVolumeSource{CSI: &v1.CSIPersistentVolumeSource{Driver: "other.example.com", VolumeHandle: "h1"}},
			ClaimRef:               &v1.ObjectReference{Namespace: s.ns, Name: "foreign", UID: foreign.UID},
		}}
	if _, err := s.kube.CoreV1().PersistentVolumes().Create(s.ctx, foreignPV, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = s.kube.CoreV1().PersistentVolumes().Delete(context.Background(), foreignPV.Name, metav1.DeleteOptions{})
	})
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(retry.RetryOnConflict(retry.DefaultRetry, func() error {
		pv, err := s.kube.CoreV1().PersistentVolumes().Get(s.ctx, foreignPV.Name, metav1.GetOptions{})
		if err != nil || pv.Status.Phase == v1.VolumeBound {
			return err
		}
		pv.Status.Phase = v1.VolumeBound
		_, err = s.kube.CoreV1().PersistentVolumes().UpdateStatus(s.ctx, pv, metav1.UpdateOptions{})
		return err
	}))
	must(retry.RetryOnConflict(retry.DefaultRetry, func() error {
		pvc, err := s.kube.CoreV1().PersistentVolumeClaims(s.ns).Get(s.ctx, foreign.Name, metav1.GetOptions{})
		if err != nil || pvc.Status.Phase == v1.ClaimBound {
			return err
		}
		pvc.Status.Phase = v1.ClaimBound
		_, err = s.kube.CoreV1().PersistentVolumeClaims(s.ns).UpdateStatus(s.ctx, pvc, metav1.UpdateOptions{})
		return err
	}))
	s.waitBound("foreign")
	s.createPVC("alien", sc.Name, "1Gi", fromClaim("foreign"))
	s.waitEvent("alien", reasonFailed, v1.EventTypeWarning, "is a volume of driver other.example.com")

	// A source that never gets bound (its class has no provisioner here).
	s.createPVC("unbound", "no-such-class", "1Gi")
	s.createPVC("early", sc.Name, "1Gi", fromClaim("unbound"))
	s.waitEvent("early", reasonFailed, v1.EventTypeWarning, "must be Bound to be cloned")

	s.createPVC("cross", other.Name, "1Gi", fromClaim("src"))
	_, pv := s.waitBound("cross")
	if vol, _ := s.drv.Volume(pv.Spec.CSI.VolumeHandle); vol.SourceVolumeID != srcPV.Spec.CSI.VolumeHandle {
		t.Errorf("cross-class clone %+v, want a clone of %s", vol, srcPV.Spec.CSI.VolumeHandle)
	}
	for _, name := range []string{"small", "raw", "alien", "early"} {
		s.requireNoVolume(name)
	}
	// "small" and "raw" are still pending on src: its protection stays.
	if f := s.claimFinalizers("src"); !slices.Contains(f, datasource.FinalizerCloneSource) {
		t.Errorf("source finalizers with clones pending: %v, want %s", f, datasource.FinalizerCloneSource)
	}
	s.deletePVC("small")
	s.deletePVC("raw")
	s.waitNoFinalizer("PVC src", datasource.FinalizerCloneSource, func() []string { return s.claimFinalizers("src") })
	for _, name := range []string{"foreign", "unbound"} {
		if f := s.claimFinalizers(name); slices.Contains(f, datasource.FinalizerCloneSource) {
			t.Errorf("refused source %s got %s: %v", name, datasource.FinalizerCloneSource, f)
		}
	}
}

// Without CLONE_VOLUME a clone is refused with an event naming the missing
// capability, and the source is left alone.
func TestCloneNeedsCapability(t *testing.T) {
	caps := slices.DeleteFunc(fakedriver.DefaultControllerCapabilities(), func(c csi.ControllerServiceCapability_RPC_Type) bool {
		return c == csi.ControllerServiceCapability_RPC_CLONE_VOLUME
	})
	s := newSourceEnv(t, fakedriver.Options{ControllerCapabilities: caps})
	sc := s.storageClass("sc", withPolicy(v1.PersistentVolumeReclaimDelete))
	s.createPVC("src", sc.Name, "1Gi")
	s.waitBound("src")
	s.createPVC("copy", sc.Name, "1Gi", fromClaim("src"))
	s.waitEvent("copy", reasonFailed, v1.EventTypeWarning, "CLONE_VOLUME capability is not reported")
	s.requireNoVolume("copy")
	if f := s.claimFinalizers("src"); slices.Contains(f, datasource.FinalizerCloneSource) {
		t.Errorf("source got %s without a clone: %v", datasource.FinalizerCloneSource, f)
	}
}

// A protection finalizer nobody needs (left by a crashed provisioner, or by
// one that never saw its claim finish) is removed.
func TestOrphanedSourceFinalizersRemoved(t *testing.T) {
	s := newSourceEnv(t, fakedriver.Options{})
	sc := s.storageClass("sc", withPolicy(v1.PersistentVolumeReclaimDelete))
	s.createPVC("src", sc.Name, "1Gi")
	s.waitBound("src")
	_, _ = s.takeSnapshot("snap", "src", s.snapshotClass())

	add := []byte(`[{"op":"add","path":"/metadata/finalizers/-","value":"` + datasource.FinalizerCloneSource + `"}]`)
	if _, err := s.kube.CoreV1().PersistentVolumeClaims(s.ns).Patch(s.ctx, "src", types.JSONPatchType, add, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	s.waitNoFinalizer("PVC src", datasource.FinalizerCloneSource, func() []string { return s.claimFinalizers("src") })

	// While the hub is down, then at start-up.
	if err := s.hub.Stop(); err != nil {
		t.Fatal(err)
	}
	vs, err := s.snaps.SnapshotV1().VolumeSnapshots(s.ns).Get(s.ctx, "snap", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	vs.Finalizers = append(vs.Finalizers, datasource.FinalizerSnapshotSource)
	if _, err := s.snaps.SnapshotV1().VolumeSnapshots(s.ns).Update(s.ctx, vs, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	s.startHub()
	s.waitNoFinalizer("VolumeSnapshot snap", datasource.FinalizerSnapshotSource, func() []string { return s.snapshotFinalizers("snap") })
}
