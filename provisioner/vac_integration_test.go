package provisioner

import (
	"maps"
	"testing"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// A PVC naming a VolumeAttributesClass gets the class parameters as
// CreateVolume's mutable_parameters and the class name on its PV (which
// kube-controller-manager requires to bind them).
func TestVolumeAttributesClass(t *testing.T) {
	e := newEnv(t, fakedriver.Options{}, DefaultConfig())
	vac, err := e.kube.StorageV1().VolumeAttributesClasses().Create(e.ctx, &storagev1.VolumeAttributesClass{
		ObjectMeta: metav1.ObjectMeta{Name: e.ns + "-gold"},
		DriverName: e.driver,
		Parameters: map[string]string{"iops": "3000"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = e.kube.StorageV1().VolumeAttributesClasses().Delete(e.ctx, vac.Name, metav1.DeleteOptions{})
	})
	sc := e.storageClass("vac")
	pvc := e.createPVC("gold", sc.Name, "1Gi", func(p *v1.PersistentVolumeClaim) { p.Spec.VolumeAttributesClassName = &vac.Name })
	_, pv := e.waitBound("gold")
	reqs := e.createRequests("pvc-" + string(pvc.UID))
	if len(reqs) != 1 || !maps.Equal(reqs[0].MutableParameters, vac.Parameters) {
		t.Errorf("CreateVolume requests %v, want one with mutable_parameters %v", reqs, vac.Parameters)
	}
	if pv.Spec.VolumeAttributesClassName == nil || *pv.Spec.VolumeAttributesClassName != vac.Name {
		t.Errorf("PV volumeAttributesClassName %v, want %s", pv.Spec.VolumeAttributesClassName, vac.Name)
	}
}
