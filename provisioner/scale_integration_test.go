package provisioner

import (
	"fmt"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// Many claims at once through the parallel workers, with a slow backend:
// one CreateVolume per claim, every claim bound, and after deleting them all
// neither PVs nor backend volumes remain.
func TestManyClaimsNoDuplicatesNoLeaks(t *testing.T) {
	const n = 25
	e := newEnv(t, fakedriver.Options{}, DefaultConfig())
	e.drv.SetDelay("CreateVolume", 50*time.Millisecond)
	sc := e.storageClass("many", withPolicy(v1.PersistentVolumeReclaimDelete))
	for i := range n {
		e.createPVC(fmt.Sprintf("c%02d", i), sc.Name, "1Mi")
	}
	e.eventually(90*time.Second, "all claims Bound", func() (bool, error) {
		list, err := e.kube.CoreV1().PersistentVolumeClaims(e.ns).List(e.ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		bound := 0
		for _, p := range list.Items {
			if p.Status.Phase == v1.ClaimBound {
				bound++
			}
		}
		return bound == n, nil
	})
	if calls, vols := e.drv.Calls("CreateVolume"), len(e.drv.Volumes()); calls != n || vols != n {
		t.Errorf("%d CreateVolume calls and %d backend volumes for %d claims, want %d each", calls, vols, n, n)
	}
	if err := e.kube.CoreV1().PersistentVolumeClaims(e.ns).DeleteCollection(e.ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	e.eventually(90*time.Second, "all backend volumes and PVs gone", func() (bool, error) {
		pvs, err := e.kube.CoreV1().PersistentVolumes().List(e.ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, pv := range pvs.Items {
			if pv.Spec.CSI != nil && pv.Spec.CSI.Driver == e.driver {
				return false, nil
			}
		}
		return len(e.drv.Volumes()) == 0, nil
	})
	if d := e.drv.Calls("DeleteVolume"); d != n {
		t.Errorf("%d DeleteVolume calls for %d volumes, want one each", d, n)
	}
}
