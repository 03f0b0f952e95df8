package provisioner

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// checkOneVolume asserts that every CreateVolume call for the claim used the
// claim's name and that the backend holds exactly the one volume the PV names.
func (e *env) checkOneVolume(name string, pv *v1.PersistentVolume, wantCalls int) {
	e.t.Helper()
	reqs := e.createRequests(name)
	if total := e.drv.Calls("CreateVolume"); total != len(reqs) {
		e.t.Errorf("%d CreateVolume calls, only %d with name %s", total, len(reqs), name)
	}
	if wantCalls > 0 && len(reqs) != wantCalls {
		e.t.Errorf("%d CreateVolume calls for %s, want %d", len(reqs), name, wantCalls)
	}
	vols := e.drv.Volumes()
	if len(vols) != 1 {
		e.t.Fatalf("backend has %d volumes, want exactly 1: %+v", len(vols), vols)
	}
	if pv != nil && pv.Spec.CSI.VolumeHandle != vols[0].ID {
		e.t.Errorf("PV handle %s, backend volume %s", pv.Spec.CSI.VolumeHandle, vols[0].ID)
	}
}

// csi-hub and the driver both restart while CreateVolume is in flight inside
// the driver (held at a gate); the driver finishes the volume after its caller
// is gone. The new hub asks again by the same name, gets the same volume, and
// never calls CreateVolume again once the PV exists, even across another restart.
func TestRestartWhileCreateVolumeInFlight(t *testing.T) {
	e := newEnv(t, fakedriver.Options{}, DefaultConfig())
	sc := e.storageClass("restart")
	gate := e.drv.Gate("CreateVolume")
	pvc := e.createPVC("data", sc.Name, "1Gi")
	name := "pvc-" + string(pvc.UID)
	wctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
	defer cancel()
	if err := gate.WaitArrived(wctx); err != nil {
		t.Fatal(err)
	}

	e.hub.Stop()
	e.drv.StopNow()
	gate.Release() // the backend completes the orphaned call
	e.eventually(10*time.Second, "the held CreateVolume to finish in the backend", func() (bool, error) {
		return len(e.drv.Volumes()) == 1, nil
	})
	if err := e.drv.Start(e.socket); err != nil {
		t.Fatal(err)
	}
	e.startHub()
	_, pv := e.waitBound("data")
	e.checkOneVolume(name, pv, 2)

	e.restartHub()
	time.Sleep(3 * time.Second)
	e.checkOneVolume(name, pv, 2)

	e.deletePVC("data")
	e.waitPVGone(pv.Name)
	if n := len(e.drv.Volumes()); n != 0 {
		t.Errorf("%d backend volumes left after deleting the claim, want 0", n)
	}
}

// CreateVolume created the volume but its answer was lost (DeadlineExceeded
// after the fact): the retry uses the same name and gets the same volume.
func TestCreateVolumeAnswerLost(t *testing.T) {
	e := newEnv(t, fakedriver.Options{}, DefaultConfig())
	e.drv.InjectErrorAfter("CreateVolume", codes.DeadlineExceeded, "answer lost", 1)
	sc := e.storageClass("lost")
	pvc := e.createPVC("data", sc.Name, "1Gi")
	_, pv := e.waitBound("data")
	e.checkOneVolume("pvc-"+string(pvc.UID), pv, 2)
}

// CreateVolume succeeded but the PV could not be created (a foreign PV holds
// the name): a Warning is reported, no PV is overwritten, and once the name is
// free the retry reuses the same CreateVolume name and so the same volume.
func TestPVCreateFailureReusesName(t *testing.T) {
	e := newEnv(t, fakedriver.Options{}, DefaultConfig())
	sc := e.storageClass("blocked")
	gate := e.drv.Gate("CreateVolume")
	pvc := e.createPVC("data", sc.Name, "1Gi")
	name := "pvc-" + string(pvc.UID)
	wctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
	defer cancel()
	if err := gate.WaitArrived(wctx); err != nil {
		t.Fatal(err)
	}
	blocker := &v1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1.PersistentVolumeSpec{
			Capacity:                      v1.ResourceList{v1.ResourceStorage: pvc.Spec.Resources.Requests[v1.ResourceStorage]},
			AccessModes:                   []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: v1.PersistentVolumeReclaimRetain,
			StorageClassName:              e.ns + "-nothing-binds-here",
			PersistentVolumeSource:        v1.PersistentVolumeSource{HostPath: &v1.HostPathVolumeSource{Path: "/nonexistent"}},
		},
	}
	if _, err := e.kube.CoreV1().PersistentVolumes().Create(e.ctx, blocker, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	gate.Release()
	e.waitEvent("data", reasonFailed, v1.EventTypeWarning, "already exists")
	got, err := e.kube.CoreV1().PersistentVolumes().Get(e.ctx, name, metav1.GetOptions{})
	if err != nil || got.Spec.HostPath == nil || got.Spec.CSI != nil {
		t.Fatalf("the foreign PV was changed: %v %+v", err, got.Spec)
	}

	if err := e.kube.CoreV1().PersistentVolumes().Delete(e.ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.eventually(30*time.Second, "the foreign PV to go", func() (bool, error) {
		p, err := e.kube.CoreV1().PersistentVolumes().Get(e.ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err) || (err == nil && p.Spec.CSI != nil), nil
	})
	_, pv := e.waitBound("data")
	e.checkOneVolume(name, pv, 2)
}

// The PVC is deleted while CreateVolume's outcome is unknown (the driver
// creates the volume but every answer is lost). The provisioner keeps asking
// by the same name until it gets the volume, records it in a PV for the gone
// claim, and that PV is then Released and deleted: nothing leaks.
func TestPVCDeletedWhileCreateUnanswered(t *testing.T) {
	e := newEnv(t, fakedriver.Options{}, DefaultConfig())
	e.drv.InjectErrorAfter("CreateVolume", codes.Unavailable, "connection lost", fakedriver.Forever)
	sc := e.storageClass("vanish")
	pvc := e.createPVC("data", sc.Name, "1Gi")
	name := "pvc-" + string(pvc.UID)
	e.eventually(30*time.Second, "the volume to exist in the backend", func() (bool, error) {
		return len(e.drv.Volumes()) == 1, nil
	})
	e.deletePVC("data")
	e.eventually(30*time.Second, "the PVC to be gone", func() (bool, error) {
		_, err := e.kube.CoreV1().PersistentVolumeClaims(e.ns).Get(e.ctx, "data", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	e.drv.ClearFaults()
	e.eventually(60*time.Second, "the backend volume to be deleted", func() (bool, error) {
		return len(e.drv.Volumes()) == 0, nil
	})
	e.waitPVGone(name)
	if n := e.drv.Calls("DeleteVolume"); n < 1 {
		t.Errorf("%d DeleteVolume calls, want at least 1", n)
	}
}
