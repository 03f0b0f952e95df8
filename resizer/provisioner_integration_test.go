package resizer

import (
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/csi-hub/csi-hub/internal/hub"
	"github.com/csi-hub/csi-hub/internal/hubtest"
	"github.com/csi-hub/csi-hub/provisioner"
	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// The provisioner and the resizer in one hub, sharing its informers: a PVC
// created with a class is provisioned with the class's parameters, then
// expanded and moved to another class.
func TestWithProvisionerInOneHub(t *testing.T) {
	e := newEnv(t, fakedriver.Options{}, DefaultConfig())
	if err := e.hub.Stop(); err != nil {
		t.Fatal(err)
	}
	e.hub = hubtest.Start(t, e.c.RESTConfig(), e.opts, func(h *hub.Hub) error {
		p, err := provisioner.New(t.Context(), provisionerDeps(h), provisioner.DefaultConfig())
		if err != nil {
			return err
		}
		r, err := New(t.Context(), hubDeps(h, e.cfg), e.cfg)
		if err != nil {
			return err
		}
		h.Add(p)
		h.Add(r)
		return nil
	})
	bronze := e.class("bronze", map[string]string{"iops": "1000"})
	gold := e.class("gold", map[string]string{"iops": "5000"})
	pvc := &v1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "data", Namespace: e.ns},
		Spec: v1.PersistentVolumeClaimSpec{
			AccessModes:               []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce},
			StorageClassName:          &e.sc,
			VolumeAttributesClassName: &bronze,
			Resources:                 v1.VolumeResourceRequirements{Requests: v1.ResourceList{v1.ResourceStorage: resource.MustParse("1Gi")}},
		},
	}
	if _, err := e.kube.CoreV1().PersistentVolumeClaims(e.ns).Create(e.ctx, pvc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitPVC("data", "Bound with class "+bronze, func(c *v1.PersistentVolumeClaim) bool {
		return c.Status.Phase == v1.ClaimBound && deref(c.Status.CurrentVolumeAttributesClassName) == bronze
	})
	if r, _ := fakedriver.LastRequest[*csi.CreateVolumeRequest](e.drv); r.GetMutableParameters()["iops"] != "1000" {
		t.Errorf("CreateVolume mutable_parameters = %v, want the bronze class", r.GetMutableParameters())
	}

	e.request("data", "2Gi")
	if err := e.setClass("data", gold); err != nil {
		t.Fatal(err)
	}
	pvc = e.waitPVC("data", "2Gi and class "+gold, func(c *v1.PersistentVolumeClaim) bool {
		return quantityIs(c.Status.Capacity[v1.ResourceStorage], "2Gi") && modified(gold)(c)
	})
	pv := e.pv(pvc.Spec.VolumeName)
	if q := pv.Spec.Capacity[v1.ResourceStorage]; !quantityIs(q, "2Gi") || deref(pv.Spec.VolumeAttributesClassName) != gold {
		t.Errorf("PV capacity %s class %q, want 2Gi and %s", q.String(), deref(pv.Spec.VolumeAttributesClassName), gold)
	}
	v, _ := e.drv.Volume(pv.Spec.CSI.VolumeHandle)
	if v.CapacityBytes != gi(2) || v.MutableParameters["iops"] != "5000" {
		t.Errorf("backend volume: %d bytes, parameters %v; want 2Gi and iops 5000", v.CapacityBytes, v.MutableParameters)
	}
	if n := e.drv.Calls("ControllerModifyVolume"); n != 1 {
		t.Errorf("ControllerModifyVolume calls = %d, want 1 (none for the class the volume was created with)", n)
	}
}

// provisionerDeps is internal/app's ProvisionerDeps with the provisioner's
// defaults, for this package's tests, which cannot import internal/app (it
// imports this package).
func provisionerDeps(h *hub.Hub) provisioner.Deps {
	core, storage := h.Informers.Core().V1(), h.Informers.Storage().V1()
	return provisioner.Deps{DriverConn: h.DriverConn(), Kube: h.Kube,
		RestConfig: h.RestConfig, Metrics: h.Metrics, PVCs: core.PersistentVolumeClaims(), PVs: core.PersistentVolumes(),
		Classes: storage.StorageClasses(), Nodes: core.Nodes(), CSINodes: storage.CSINodes(), Capacities: storage.CSIStorageCapacities(),
		VAsByPV: h.AttachmentsByPV, Snapshots: h.Snapshots, Recorder: h.Recorder, RetryMax: h.Opts.RetryIntervalMax,
		Work: hub.Work{Steps: h.Steps, NewQueue: h.NewQueue, Tuning: h.Opts.Tune(hub.Tuning{}, provisioner.Defaults)}}
}
