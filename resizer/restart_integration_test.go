package resizer

import (
	"context"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	v1 "k8s.io/api/core/v1"

	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// The hub stops while ControllerExpandVolume is running in the driver, and
// the user lowers the request meanwhile. The new hub must not follow the lower
// request: the driver may have completed the first size (here it does), so
// the expansion is finished at the recorded allocatedResources.
func TestExpandRestartMidCallKeepsUncertainSize(t *testing.T) {
	e := newEnv(t, fakedriver.Options{}, DefaultConfig())
	pvc, pv := e.boundVolume("data", "1Gi")
	gate := e.drv.Gate("ControllerExpandVolume")

	e.request(pvc.Name, "4Gi")
	ctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
	defer cancel()
	if err := gate.WaitArrived(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.hub.Stop(); err != nil {
		t.Fatal(err)
	}
	gate.Release() // the driver completes the call nobody waits for any more
	e.eventually(10*time.Second, "the backend to reach 4Gi", func() (bool, error) {
		v, _ := e.drv.Volume(pv.Spec.CSI.VolumeHandle)
		return v.CapacityBytes == gi(4), nil
	})
	got := e.pvc(pvc.Name)
	if got.Status.AllocatedResourceStatuses[v1.ResourceStorage] != v1.PersistentVolumeClaimControllerResizeInProgress ||
		!quantityIs(got.Status.AllocatedResources[v1.ResourceStorage], "4Gi") {
		t.Fatalf("PVC status after the interrupted call = %+v, want ControllerResizeInProgress for 4Gi", got.Status)
	}

	e.request(pvc.Name, "3Gi")
	e.startHub()
	got = e.waitPVC(pvc.Name, "expansion finished", func(c *v1.PersistentVolumeClaim) bool {
		return quantityIs(c.Status.Capacity[v1.ResourceStorage], "4Gi")
	})
	sizes := e.expandSizes()
	for _, s := range sizes {
		if s != gi(4) {
			t.Errorf("ControllerExpandVolume sizes = %v, want only 4Gi (the uncertain size), never the lowered 3Gi", sizes)
			break
		}
	}
	if len(sizes) != 2 {
		t.Errorf("ControllerExpandVolume calls = %d, want 2 (interrupted + retry after restart)", len(sizes))
	}
	if q := e.pv(pv.Name).Spec.Capacity[v1.ResourceStorage]; !quantityIs(q, "4Gi") {
		t.Errorf("PV capacity = %s, want 4Gi (what the backend has)", q.String())
	}
	noConditions(t, got, v1.PersistentVolumeClaimResizing, v1.PersistentVolumeClaimControllerResizeError)
}

// An infeasible size is retried only after --retry-interval-max (here 2s),
// once per interval, not in a storm.
func TestExpandInfeasibleSlowRetry(t *testing.T) {
	e := newEnv(t, fakedriver.Options{}, DefaultConfig())
	pvc, _ := e.boundVolume("data", "1Gi")
	e.drv.InjectError("ControllerExpandVolume", 11 /* OutOfRange */, "too big", 2)
	e.request(pvc.Name, "50Gi")
	e.waitPVC(pvc.Name, "ControllerResizeInfeasible", func(c *v1.PersistentVolumeClaim) bool {
		return c.Status.AllocatedResourceStatuses[v1.ResourceStorage] == v1.PersistentVolumeClaimControllerResizeInfeasible
	})
	time.Sleep(time.Second)
	if n := e.drv.Calls("ControllerExpandVolume"); n != 1 {
		t.Errorf("calls within 1s of the infeasible answer = %d, want 1", n)
	}
	// After the slow-retry interval the same size is tried again (and, the
	// injected errors used up, succeeds on the third call).
	e.waitPVC(pvc.Name, "expanded to 50Gi eventually", func(c *v1.PersistentVolumeClaim) bool {
		return quantityIs(c.Status.Capacity[v1.ResourceStorage], "50Gi")
	})
	times := e.csiCallTimes("ControllerExpandVolume")
	if len(times) != 3 {
		t.Fatalf("calls = %d, want 3", len(times))
	}
	for i := 1; i < 3; i++ {
		if gap := times[i].Sub(times[i-1]); gap < 1500*time.Millisecond {
			t.Errorf("gap before call %d = %v, want about --retry-interval-max (2s)", i+1, gap)
		}
	}
}

// The hub stops while ControllerModifyVolume to class gold is running, and the
// user switches to silver meanwhile. The new hub first finishes gold (the
// driver may have applied it), then applies silver.
func TestModifyRestartMidCallFinishesTargetFirst(t *testing.T) {
	e := newEnv(t, fakedriver.Options{}, DefaultConfig())
	pvc, pv := e.boundVolume("data", "1Gi")
	gold := e.class("gold", map[string]string{"iops": "5000"})
	silver := e.class("silver", map[string]string{"iops": "3000"})
	gate := e.drv.Gate("ControllerModifyVolume")

	if err := e.setClass(pvc.Name, gold); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
	defer cancel()
	if err := gate.WaitArrived(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.hub.Stop(); err != nil {
		t.Fatal(err)
	}
	gate.Release()
	if s := e.pvc(pvc.Name).Status.ModifyVolumeStatus; s == nil || s.Status != v1.PersistentVolumeClaimModifyVolumeInProgress || s.TargetVolumeAttributesClassName != gold {
		t.Fatalf("modifyVolumeStatus after the interrupted call = %+v, want InProgress to %s", s, gold)
	}
	if err := e.setClass(pvc.Name, silver); err != nil {
		t.Fatal(err)
	}
	e.startHub()
	e.waitPVC(pvc.Name, "current class "+silver, modified(silver))
	var order []string
	for _, r := range fakedriver.RequestsOf[*csi.ControllerModifyVolumeRequest](e.drv) {
		order = append(order, r.GetMutableParameters()["iops"])
	}
	if len(order) != 3 || order[0] != "5000" || order[1] != "5000" || order[2] != "3000" {
		t.Errorf("ControllerModifyVolume iops in order = %v, want [5000 5000 3000]: finish gold, then silver", order)
	}
	if got := deref(e.pv(pv.Name).Spec.VolumeAttributesClassName); got != silver {
		t.Errorf("PV class = %q, want %q", got, silver)
	}
}

// A driver that expands only on the node (no controller EXPAND_VOLUME, node
// EXPAND_VOLUME): the PV takes the new size without a CSI call and kubelet's
// turn is marked, as external-resizer's trivial resizer does.
func TestExpandNodeOnlyDriver(t *testing.T) {
	e := newEnv(t, fakedriver.Options{
		NodeExpansionRequired: true,
		ControllerCapabilities: []csi.ControllerServiceCapability_RPC_Type{
			csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME, csi.ControllerServiceCapability_RPC_MODIFY_VOLUME},
	}, DefaultConfig())
	if e.ctrl.expand == nil || !e.ctrl.expand.nodeOnly {
		t.Fatal("resizer did not choose node-only expansion for a driver with only node EXPAND_VOLUME")
	}
	pvc, pv := e.boundVolume("data", "1Gi")
	e.request(pvc.Name, "2Gi")
	got := e.waitPVC(pvc.Name, "NodeResizePending", func(c *v1.PersistentVolumeClaim) bool {
		return c.Status.AllocatedResourceStatuses[v1.ResourceStorage] == v1.PersistentVolumeClaimNodeResizePending
	})
	if _, ok := condition(got, v1.PersistentVolumeClaimFileSystemResizePending); !ok {
		t.Errorf("no FileSystemResizePending condition: %+v", got.Status.Conditions)
	}
	if q := e.pv(pv.Name).Spec.Capacity[v1.ResourceStorage]; !quantityIs(q, "2Gi") {
		t.Errorf("PV capacity = %s, want 2Gi", q.String())
	}
	if n := e.drv.Calls("ControllerExpandVolume"); n != 0 {
		t.Errorf("ControllerExpandVolume calls = %d, want 0", n)
	}
}
