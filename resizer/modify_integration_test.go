package resizer

import (
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/csi-hub/csi-hub/internal/hub"
	"github.com/csi-hub/csi-hub/test/fakedriver"
)

func modified(class string) func(*v1.PersistentVolumeClaim) bool {
	return func(c *v1.PersistentVolumeClaim) bool {
		return deref(c.Status.CurrentVolumeAttributesClassName) == class && c.Status.ModifyVolumeStatus == nil
	}
}

// Setting a class on a bound PVC calls ControllerModifyVolume with the
// class's parameters and records the class on the PV and the PVC.
func TestModifyThroughVolumeAttributesClass(t *testing.T) {
	// The driver must accept the --extra-modify-metadata keys too.
	e := newEnv(t, fakedriver.Options{MutableParameterKeys: []string{"iops", "throughput", paramPVCName, paramPVCNamespace, paramPVName}},
		Config{ExtraModifyMetadata: true})
	pvc, pv := e.boundVolume("data", "1Gi")
	gold := e.class("gold", map[string]string{"iops": "5000", "throughput": "250"})

	if err := e.setClass(pvc.Name, gold); err != nil {
		t.Fatal(err)
	}
	pvc = e.waitPVC(pvc.Name, "current class "+gold, modified(gold))
	if got := deref(e.pv(pv.Name).Spec.VolumeAttributesClassName); got != gold {
		t.Errorf("PV spec.volumeAttributesClassName = %q, want %q", got, gold)
	}
	noConditions(t, pvc, v1.PersistentVolumeClaimVolumeModifyingVolume, v1.PersistentVolumeClaimVolumeModifyVolumeError)
	e.waitEvent(pvc.Name, reasonModify, v1.EventTypeNormal, gold)
	e.waitEvent(pvc.Name, reasonModifySuccessful, v1.EventTypeNormal, gold)

	reqs := fakedriver.RequestsOf[*csi.ControllerModifyVolumeRequest](e.drv)
	if len(reqs) != 1 {
		t.Fatalf("ControllerModifyVolume calls = %d, want 1", len(reqs))
	}
	p := reqs[0].GetMutableParameters()
	if reqs[0].GetVolumeId() != pv.Spec.CSI.VolumeHandle || p["iops"] != "5000" || p["throughput"] != "250" {
		t.Errorf("request = %v, want the class parameters for volume %s", reqs[0], pv.Spec.CSI.VolumeHandle)
	}
	if p[paramPVCName] != pvc.Name || p[paramPVCNamespace] != e.ns || p[paramPVName] != pv.Name {
		t.Errorf("parameters %v lack --extra-modify-metadata names", p)
	}
	if v, _ := e.drv.Volume(pv.Spec.CSI.VolumeHandle); v.MutableParameters["iops"] != "5000" {
		t.Errorf("backend volume parameters = %v, want iops 5000", v.MutableParameters)
	}
	time.Sleep(time.Second)
	if n := e.drv.Calls("ControllerModifyVolume"); n != 1 {
		t.Errorf("ControllerModifyVolume calls after settling = %d, want 1", n)
	}
}

// A class the driver refuses (InvalidArgument) makes the modification
// Infeasible with a ModifyVolumeError condition and a Warning event, and is not
// retried in a storm; setting the PVC back to its current class clears it.
func TestModifyInfeasibleRollback(t *testing.T) {
	e := newEnv(t, fakedriver.Options{}, DefaultConfig(),
		withHubOptions(func(o *hub.Options) { o.RetryIntervalMax = time.Minute }))
	pvc, pv := e.boundVolume("data", "1Gi")
	silver := e.class("silver", map[string]string{"iops": "3000"})
	bad := e.class("bad", map[string]string{"iops": "3000", "encryption": "on"}) // not a mutable key of the driver

	if err := e.setClass(pvc.Name, silver); err != nil {
		t.Fatal(err)
	}
	e.waitPVC(pvc.Name, "current class "+silver, modified(silver))

	if err := e.setClass(pvc.Name, bad); err != nil {
		t.Fatal(err)
	}
	pvc = e.waitPVC(pvc.Name, "Infeasible", func(c *v1.PersistentVolumeClaim) bool {
		s := c.Status.ModifyVolumeStatus
		return s != nil && s.Status == v1.PersistentVolumeClaimModifyVolumeInfeasible
	})
	if got := pvc.Status.ModifyVolumeStatus.TargetVolumeAttributesClassName; got != bad {
		t.Errorf("targetVolumeAttributesClassName = %q, want %q", got, bad)
	}
	if got := deref(pvc.Status.CurrentVolumeAttributesClassName); got != silver {
		t.Errorf("current class = %q, want %q while the new one is refused", got, silver)
	}
	if c, ok := condition(pvc, v1.PersistentVolumeClaimVolumeModifyVolumeError); !ok || !strings.Contains(c.Message, "encryption") {
		t.Errorf("ModifyVolumeError condition = %+v, want the driver's message", c)
	}
	e.waitEvent(pvc.Name, reasonModifyFailed, v1.EventTypeWarning, "encryption")
	time.Sleep(1500 * time.Millisecond)
	if n := e.drv.Calls("ControllerModifyVolume"); n != 2 {
		t.Errorf("ControllerModifyVolume calls = %d, want 2 (silver, one refused attempt; no retry storm)", n)
	}

	// Rollback: back to the class the volume has.
	if err := e.setClass(pvc.Name, silver); err != nil {
		t.Fatal(err)
	}
	pvc = e.waitPVC(pvc.Name, "status cleared after rollback", modified(silver))
	noConditions(t, pvc, v1.PersistentVolumeClaimVolumeModifyingVolume, v1.PersistentVolumeClaimVolumeModifyVolumeError)
	if got := deref(e.pv(pv.Name).Spec.VolumeAttributesClassName); got != silver {
		t.Errorf("PV class = %q, want %q", got, silver)
	}
	if r, _ := fakedriver.LastRequest[*csi.ControllerModifyVolumeRequest](e.drv); r.GetMutableParameters()["encryption"] != "" {
		t.Errorf("last request %v still carries the refused class", r)
	}
}

// A first class that is refused can be taken back entirely (spec set to no
// class): the conditions are cleared and nothing is left stuck.
func TestModifyFirstClassInfeasibleRemoved(t *testing.T) {
	e := newEnv(t, fakedriver.Options{InfeasibleMutableParameters: map[string]string{"iops": "1000000"}}, DefaultConfig(),
		withHubOptions(func(o *hub.Options) { o.RetryIntervalMax = time.Minute }))
	pvc, pv := e.boundVolume("data", "1Gi")
	huge := e.class("huge", map[string]string{"iops": "1000000"})
	if err := e.setClass(pvc.Name, huge); err != nil {
		t.Fatal(err)
	}
	e.waitPVC(pvc.Name, "Infeasible", func(c *v1.PersistentVolumeClaim) bool {
		s := c.Status.ModifyVolumeStatus
		return s != nil && s.Status == v1.PersistentVolumeClaimModifyVolumeInfeasible
	})
	e.waitEvent(pvc.Name, reasonModifyFailed, v1.EventTypeWarning, "")
	if err := e.setClass(pvc.Name, ""); err != nil {
		t.Skipf("API server does not allow removing a never-applied class: %v", err)
	}
	pvc = e.waitPVC(pvc.Name, "modify conditions cleared", func(c *v1.PersistentVolumeClaim) bool {
		_, a := condition(c, v1.PersistentVolumeClaimVolumeModifyingVolume)
		_, b := condition(c, v1.PersistentVolumeClaimVolumeModifyVolumeError)
		return !a && !b
	})
	e.waitEvent(pvc.Name, reasonModifyCancelled, v1.EventTypeNormal, "")
	if pv := e.pv(pv.Name); pv.Spec.VolumeAttributesClassName != nil {
		t.Errorf("PV class = %q, want none", *pv.Spec.VolumeAttributesClassName)
	}
	if n := e.drv.Calls("ControllerModifyVolume"); n != 1 {
		t.Errorf("ControllerModifyVolume calls = %d, want 1", n)
	}
}

// A class that does not exist yet leaves the PVC Pending with a Warning
// event; creating the class resumes the modification without a restart.
func TestModifyPendingUntilClassExists(t *testing.T) {
	e := newEnv(t, fakedriver.Options{}, DefaultConfig())
	pvc, _ := e.boundVolume("data", "1Gi")
	later := e.ns + "-later"
	if err := e.setClass(pvc.Name, later); err != nil {
		t.Fatal(err)
	}
	e.waitPVC(pvc.Name, "Pending", func(c *v1.PersistentVolumeClaim) bool {
		s := c.Status.ModifyVolumeStatus
		return s != nil && s.Status == v1.PersistentVolumeClaimModifyVolumePending && s.TargetVolumeAttributesClassName == later
	})
	e.waitEvent(pvc.Name, reasonModifyFailed, v1.EventTypeWarning, "does not exist")
	if n := e.drv.Calls("ControllerModifyVolume"); n != 0 {
		t.Errorf("ControllerModifyVolume calls = %d before the class exists, want 0", n)
	}
	e.class("later", map[string]string{"throughput": "100"})
	e.waitPVC(pvc.Name, "current class "+later, modified(later))
}

// A transient error keeps the modification InProgress with a ModifyVolumeError
// condition and retries the same class with backoff until it succeeds.
func TestModifyTransientErrorRetried(t *testing.T) {
	e := newEnv(t, fakedriver.Options{}, DefaultConfig())
	pvc, _ := e.boundVolume("data", "1Gi")
	gold := e.class("gold", map[string]string{"iops": "5000"})
	e.drv.InjectError("ControllerModifyVolume", codes.Unavailable, "array busy", 3)
	if err := e.setClass(pvc.Name, gold); err != nil {
		t.Fatal(err)
	}
	pvc = e.waitPVC(pvc.Name, "current class "+gold, modified(gold))
	noConditions(t, pvc, v1.PersistentVolumeClaimVolumeModifyingVolume, v1.PersistentVolumeClaimVolumeModifyVolumeError)
	e.waitEvent(pvc.Name, reasonModifyFailed, v1.EventTypeWarning, "array busy")
	if n := e.drv.Calls("ControllerModifyVolume"); n != 4 {
		t.Errorf("ControllerModifyVolume calls = %d, want 4 (3 failures + success)", n)
	}
	times := e.csiCallTimes("ControllerModifyVolume")
	if len(times) == 4 {
		first, last := times[1].Sub(times[0]), times[3].Sub(times[2])
		t.Logf("retry gaps: %v %v %v", first, times[2].Sub(times[1]), last)
		if first < 80*time.Millisecond || last < 3*first {
			t.Errorf("modify retries did not back off: first gap %v, last %v", first, last)
		}
	}
}

// The controller-modify secret the provisioner records on the PV reaches
// ControllerModifyVolume; without it the expand secret is used.
func TestModifySecrets(t *testing.T) {
	e := newEnv(t, fakedriver.Options{}, DefaultConfig())
	for name, value := range map[string]string{"modify-creds": "m0dify", "expand-creds": "exp4nd"} {
		s := &v1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns}, StringData: map[string]string{"key": value}}
		if _, err := e.kube.CoreV1().Secrets(e.ns).Create(e.ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	annotated, _ := e.boundVolume("annotated", "1Gi", withExpandSecret(e.ns, "expand-creds"),
		func(pv *v1.PersistentVolume, _ *v1.PersistentVolumeClaim) {
			pv.Annotations = map[string]string{annModifySecretName: "modify-creds", annModifySecretNamespace: e.ns}
		})
	plain, _ := e.boundVolume("plain", "1Gi", withExpandSecret(e.ns, "expand-creds"))
	gold := e.class("gold", map[string]string{"iops": "5000"})

	if err := e.setClass(annotated.Name, gold); err != nil {
		t.Fatal(err)
	}
	e.waitPVC(annotated.Name, "current class "+gold, modified(gold))
	if r, _ := fakedriver.LastRequest[*csi.ControllerModifyVolumeRequest](e.drv); r.GetSecrets()["key"] != "m0dify" {
		t.Errorf("secrets of the annotated PV's request have key=%q, want the modify secret", r.GetSecrets()["key"])
	}
	if err := e.setClass(plain.Name, gold); err != nil {
		t.Fatal(err)
	}
	e.waitPVC(plain.Name, "current class "+gold, modified(gold))
	if r, _ := fakedriver.LastRequest[*csi.ControllerModifyVolumeRequest](e.drv); r.GetSecrets()["key"] != "exp4nd" {
		t.Errorf("secrets of the plain PV's request have key=%q, want the expand secret", r.GetSecrets()["key"])
	}
}
