package resizer

import (
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/internal/hub"
	"github.com/csi-hub/csi-hub/internal/testutil"
	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// A driver that needs no node expansion: the hub completes the expansion
// itself, exactly as external-resizer leaves the objects.
func TestExpandWithoutNodeExpansion(t *testing.T) {
	e := newEnv(t, fakedriver.Options{}, DefaultConfig())
	pvc, pv := e.boundVolume("data", "1Gi")

	e.request(pvc.Name, "2Gi")
	pvc = e.waitPVC(pvc.Name, "status.capacity 2Gi", func(c *v1.PersistentVolumeClaim) bool {
		return quantityIs(c.Status.Capacity[v1.ResourceStorage], "2Gi")
	})
	if got := e.pv(pv.Name).Spec.Capacity[v1.ResourceStorage]; !quantityIs(got, "2Gi") {
		t.Errorf("PV capacity = %s, want 2Gi", got.String())
	}
	if got := pvc.Status.AllocatedResources[v1.ResourceStorage]; !quantityIs(got, "2Gi") {
		t.Errorf("status.allocatedResources = %s, want 2Gi", got.String())
	}
	if len(pvc.Status.AllocatedResourceStatuses) != 0 {
		t.Errorf("status.allocatedResourceStatuses = %v, want none after a finished expansion", pvc.Status.AllocatedResourceStatuses)
	}
	if pvc.Annotations[annNodeExpansionNotRequired] != "true" {
		t.Errorf("annotation %s = %q, want \"true\" so kubelet skips NodeExpandVolume", annNodeExpansionNotRequired, pvc.Annotations[annNodeExpansionNotRequired])
	}
	noConditions(t, pvc, v1.PersistentVolumeClaimResizing, v1.PersistentVolumeClaimFileSystemResizePending, v1.PersistentVolumeClaimControllerResizeError)
	e.waitEvent(pvc.Name, reasonResizing, v1.EventTypeNormal, pv.Name)
	e.waitEvent(pvc.Name, reasonResizeSuccessful, v1.EventTypeNormal, "succeeded")

	reqs := fakedriver.RequestsOf[*csi.ControllerExpandVolumeRequest](e.drv)
	if len(reqs) != 1 {
		t.Fatalf("ControllerExpandVolume calls = %d, want 1", len(reqs))
	}
	r := reqs[0]
	if r.GetVolumeId() != pv.Spec.CSI.VolumeHandle || r.GetCapacityRange().GetRequiredBytes() != gi(2) {
		t.Errorf("request = %v, want volume %s, required_bytes %d", r, pv.Spec.CSI.VolumeHandle, gi(2))
	}
	if m := r.GetVolumeCapability().GetMount(); m == nil || m.GetFsType() != "ext4" ||
		r.GetVolumeCapability().GetAccessMode().GetMode() != csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER {
		t.Errorf("volume_capability = %v, want mount ext4, SINGLE_NODE_WRITER", r.GetVolumeCapability())
	}
	if v, _ := e.drv.Volume(pv.Spec.CSI.VolumeHandle); v.CapacityBytes != gi(2) {
		t.Errorf("backend volume size = %d, want %d", v.CapacityBytes, gi(2))
	}
	// The learner's view (/steps): why, the CSI call, then the writes.
	var flow []string
	for _, st := range e.hub.Steps.Recent(0) {
		if st.Object == "PersistentVolumeClaim "+e.ns+"/"+pvc.Name && st.Controller == Name {
			flow = append(flow, string(st.Kind)+" "+st.Action)
		}
	}
	t.Logf("steps: %q", flow)
	want := []string{"trigger", "write", "csi ControllerExpandVolume", "write", "write"}
	if len(flow) != len(want) {
		t.Errorf("steps = %q, want the shape %q", flow, want)
	} else {
		for i, w := range want {
			if !strings.HasPrefix(flow[i], w) {
				t.Errorf("step %d = %q, want %q...", i, flow[i], w)
			}
		}
	}
	// Settled: no further calls or writes for an expanded PVC.
	time.Sleep(time.Second)
	if n := e.drv.Calls("ControllerExpandVolume"); n != 1 {
		t.Errorf("ControllerExpandVolume calls after settling = %d, want 1", n)
	}
}

// A driver that needs node expansion: the controller part is done and the
// PVC waits for kubelet (which this cluster does not run).
func TestExpandWithNodeExpansionPending(t *testing.T) {
	e := newEnv(t, fakedriver.Options{NodeExpansionRequired: true}, Config{AnnotateFsResize: true})
	pvc, pv := e.boundVolume("data", "1Gi", withBlock())

	e.request(pvc.Name, "3Gi")
	pvc = e.waitPVC(pvc.Name, "FileSystemResizePending", func(c *v1.PersistentVolumeClaim) bool {
		_, ok := condition(c, v1.PersistentVolumeClaimFileSystemResizePending)
		return ok
	})
	if got := pvc.Status.AllocatedResourceStatuses[v1.ResourceStorage]; got != v1.PersistentVolumeClaimNodeResizePending {
		t.Errorf("allocatedResourceStatuses[storage] = %q, want %q", got, v1.PersistentVolumeClaimNodeResizePending)
	}
	if got := pvc.Status.Capacity[v1.ResourceStorage]; !quantityIs(got, "1Gi") {
		t.Errorf("PVC status.capacity = %s, want 1Gi until kubelet finishes", got.String())
	}
	if got := pvc.Status.AllocatedResources[v1.ResourceStorage]; !quantityIs(got, "3Gi") {
		t.Errorf("status.allocatedResources = %s, want 3Gi", got.String())
	}
	if _, ok := pvc.Annotations[annNodeExpansionNotRequired]; ok {
		t.Errorf("annotation %s set although the node must expand", annNodeExpansionNotRequired)
	}
	pvNow := e.pv(pv.Name)
	if got := pvNow.Spec.Capacity[v1.ResourceStorage]; !quantityIs(got, "3Gi") {
		t.Errorf("PV capacity = %s, want 3Gi", got.String())
	}
	if got := pvNow.Annotations[annPreResizeCapacity]; got != "1Gi" {
		t.Errorf("PV annotation %s = %q, want 1Gi (AnnotateFsResize)", annPreResizeCapacity, got)
	}
	e.waitEvent(pvc.Name, reasonFileSystemResizeNeeded, v1.EventTypeNormal, "file system resize")
	if r, _ := fakedriver.LastRequest[*csi.ControllerExpandVolumeRequest](e.drv); r.GetVolumeCapability().GetBlock() == nil {
		t.Errorf("volume_capability = %v, want block for a block PV", r.GetVolumeCapability())
	}
	// The node's turn: the hub must not call the driver again meanwhile.
	time.Sleep(1500 * time.Millisecond)
	// kube-controller-manager's expand controller marks PVCs it leaves to an
	// external resizer; csi-hub, like external-resizer, does not depend on it.
	t.Logf("annotation %s on the PVC: %q; kube-controller-manager ExternalExpanding events: %d",
		annResizer, e.pvc(pvc.Name).Annotations[annResizer], len(e.events(pvc.Name, "ExternalExpanding")))
	if n := e.drv.Calls("ControllerExpandVolume"); n != 1 {
		t.Errorf("ControllerExpandVolume calls while the node expansion is pending = %d, want 1", n)
	}

	// Stand in for kubelet finishing: status.capacity reaches the PV size.
	// The hub then drops the pre-resize annotation.
	done := e.pvc(pvc.Name).DeepCopy()
	done.Status.Capacity[v1.ResourceStorage] = pvNow.Spec.Capacity[v1.ResourceStorage]
	done.Status.Conditions = nil
	done.Status.AllocatedResourceStatuses = nil
	if _, err := e.kube.CoreV1().PersistentVolumeClaims(e.ns).UpdateStatus(e.ctx, done, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.eventually(30*time.Second, "the pre-resize annotation to be removed", func() (bool, error) {
		_, ok := e.pv(pv.Name).Annotations[annPreResizeCapacity]
		return !ok, nil
	})
}

// The driver says the size can never be reached: the PVC shows
// ControllerResizeInfeasible, the driver is not hammered, and when the user
// lowers the request the expansion proceeds to the new size.
func TestExpandInfeasibleThenLowered(t *testing.T) {
	// A long --retry-interval-max keeps the slow retry of the refused size
	// out of the test's window, so every call below is explained.
	e := newEnv(t, fakedriver.Options{}, DefaultConfig(),
		withHubOptions(func(o *hub.Options) { o.RetryIntervalMax = time.Minute }))
	pvc, pv := e.boundVolume("data", "1Gi")
	e.drv.InjectError("ControllerExpandVolume", codes.OutOfRange, "at most 10Gi per volume", 1)

	e.request(pvc.Name, "100Gi")
	pvc = e.waitPVC(pvc.Name, "ControllerResizeInfeasible", func(c *v1.PersistentVolumeClaim) bool {
		return c.Status.AllocatedResourceStatuses[v1.ResourceStorage] == v1.PersistentVolumeClaimControllerResizeInfeasible
	})
	if c, ok := condition(pvc, v1.PersistentVolumeClaimControllerResizeError); !ok || c.Status != v1.ConditionTrue {
		t.Errorf("condition ControllerResizeError = %+v, want True", c)
	}
	e.waitEvent(pvc.Name, reasonResizeFailed, v1.EventTypeWarning, "at most 10Gi")
	time.Sleep(1500 * time.Millisecond)
	if got := e.expandSizes(); len(got) != 1 || got[0] != gi(100) {
		t.Fatalf("ControllerExpandVolume sizes = %v, want one call for 100Gi (no retry storm)", got)
	}

	// Recovery: the API server accepts a lower request (> status.capacity).
	e.request(pvc.Name, "3Gi")
	pvc = e.waitPVC(pvc.Name, "expanded to 3Gi", func(c *v1.PersistentVolumeClaim) bool {
		return quantityIs(c.Status.Capacity[v1.ResourceStorage], "3Gi")
	})
	if got := e.expandSizes(); len(got) != 2 || got[1] != gi(3) {
		t.Errorf("ControllerExpandVolume sizes = %v, want [100Gi 3Gi]", got)
	}
	if got := pvc.Status.AllocatedResources[v1.ResourceStorage]; !quantityIs(got, "3Gi") {
		t.Errorf("status.allocatedResources = %s, want 3Gi", got.String())
	}
	if len(pvc.Status.AllocatedResourceStatuses) != 0 {
		t.Errorf("allocatedResourceStatuses = %v, want none", pvc.Status.AllocatedResourceStatuses)
	}
	noConditions(t, pvc, v1.PersistentVolumeClaimResizing, v1.PersistentVolumeClaimControllerResizeError)
	if got := e.pv(pv.Name).Spec.Capacity[v1.ResourceStorage]; !quantityIs(got, "3Gi") {
		t.Errorf("PV capacity = %s, want 3Gi", got.String())
	}
}

// Transient failures (Unavailable) are retried with growing intervals, leave
// a Warning event each, and no condition once the expansion succeeds.
func TestExpandTransientErrorsBackOff(t *testing.T) {
	e := newEnv(t, fakedriver.Options{}, DefaultConfig())
	pvc, _ := e.boundVolume("data", "1Gi")
	e.drv.InjectError("ControllerExpandVolume", codes.Unavailable, "backend restarting", 4)

	e.request(pvc.Name, "2Gi")
	pvc = e.waitPVC(pvc.Name, "expanded to 2Gi", func(c *v1.PersistentVolumeClaim) bool {
		return quantityIs(c.Status.Capacity[v1.ResourceStorage], "2Gi")
	})
	if n := e.drv.Calls("ControllerExpandVolume"); n != 5 {
		t.Errorf("ControllerExpandVolume calls = %d, want 5 (4 failures + success)", n)
	}
	if got := e.expandSizes(); got[0] != gi(2) || got[len(got)-1] != gi(2) {
		t.Errorf("sizes = %v, want every retry for 2Gi", got)
	}
	times := e.csiCallTimes("ControllerExpandVolume")
	if len(times) != 5 {
		t.Fatalf("recorded ControllerExpandVolume steps = %d, want 5", len(times))
	}
	first, last := times[1].Sub(times[0]), times[4].Sub(times[3])
	t.Logf("retry gaps: %v", []time.Duration{first, times[2].Sub(times[1]), times[3].Sub(times[2]), last})
	// --retry-interval-start 100ms doubling: 100, 200, 400, 800ms.
	if first < 80*time.Millisecond || last < 3*first || last < 500*time.Millisecond {
		t.Errorf("retry gaps did not grow: first %v, last %v", first, last)
	}
	if n := len(e.events(pvc.Name, reasonResizeFailed)); n == 0 {
		t.Error("no VolumeResizeFailed event for the failed attempts")
	}
	e.waitEvent(pvc.Name, reasonResizeFailed, v1.EventTypeWarning, "backend restarting")
	noConditions(t, pvc, v1.PersistentVolumeClaimResizing, v1.PersistentVolumeClaimControllerResizeError)
}

// A final, not infeasible, error (Internal) is retried with backoff, leaves a
// ControllerResizeError condition meanwhile and none after success.
func TestExpandFinalErrorRecovers(t *testing.T) {
	// A 1s first retry interval leaves time to observe the error condition.
	e := newEnv(t, fakedriver.Options{}, DefaultConfig(),
		withHubOptions(func(o *hub.Options) { o.RetryIntervalStart = time.Second }))
	pvc, _ := e.boundVolume("data", "1Gi")
	e.drv.InjectError("ControllerExpandVolume", codes.Internal, "disk array hiccup", 2)

	e.request(pvc.Name, "2Gi")
	e.waitEvent(pvc.Name, reasonResizeFailed, v1.EventTypeWarning, "disk array hiccup")
	e.waitPVC(pvc.Name, "ControllerResizeError after a final error", func(c *v1.PersistentVolumeClaim) bool {
		_, ok := condition(c, v1.PersistentVolumeClaimControllerResizeError)
		return ok
	})
	pvc = e.waitPVC(pvc.Name, "expanded to 2Gi", func(c *v1.PersistentVolumeClaim) bool {
		return quantityIs(c.Status.Capacity[v1.ResourceStorage], "2Gi")
	})
	noConditions(t, pvc, v1.PersistentVolumeClaimResizing, v1.PersistentVolumeClaimControllerResizeError)
	if n := e.drv.Calls("ControllerExpandVolume"); n != 3 {
		t.Errorf("ControllerExpandVolume calls = %d, want 3", n)
	}
}

// The PV's controller-expand secret reaches the driver; a missing secret is
// a Warning event and no CSI call.
func TestExpandSecrets(t *testing.T) {
	logs := testutil.CaptureKlog(t, 5)
	e := newEnv(t, fakedriver.Options{}, DefaultConfig())
	secret := &v1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "expand-creds", Namespace: e.ns}, StringData: map[string]string{"password": "s3cret"}}
	if _, err := e.kube.CoreV1().Secrets(e.ns).Create(e.ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pvc, _ := e.boundVolume("data", "1Gi", withExpandSecret(e.ns, "expand-creds"))
	missing, _ := e.boundVolume("nosecret", "1Gi", withExpandSecret(e.ns, "absent"))

	e.request(pvc.Name, "2Gi")
	e.request(missing.Name, "2Gi")
	e.waitPVC(pvc.Name, "expanded to 2Gi", func(c *v1.PersistentVolumeClaim) bool {
		return quantityIs(c.Status.Capacity[v1.ResourceStorage], "2Gi")
	})
	r, _ := fakedriver.LastRequest[*csi.ControllerExpandVolumeRequest](e.drv)
	if r.GetSecrets()["password"] != "s3cret" {
		t.Errorf("secrets = %d keys, want the secret's password", len(r.GetSecrets()))
	}
	e.waitEvent(missing.Name, reasonResizeFailed, v1.EventTypeWarning, "absent")
	// No CSI call was made, so the failure is final and shown on the PVC.
	e.waitPVC(missing.Name, "ControllerResizeError naming the secret", func(c *v1.PersistentVolumeClaim) bool {
		cd, ok := condition(c, v1.PersistentVolumeClaimControllerResizeError)
		return ok && strings.Contains(cd.Message, "absent")
	})
	if n := e.drv.Calls("ControllerExpandVolume"); n != 1 {
		t.Errorf("ControllerExpandVolume calls = %d, want 1 (none for the PV whose secret is missing)", n)
	}
	klog.Flush()
	out := logs.String()
	// The call's line carries the worker's context (controller, object) before its own keys.
	logged := false
	for _, line := range strings.Split(out, "\n") {
		logged = logged || strings.Contains(line, `"GRPC call"`) && strings.Contains(line, `method="/csi.v1.Controller/ControllerExpandVolume"`)
	}
	if !logged || !strings.Contains(out, "***stripped***") {
		t.Errorf("the -v=5 log does not show the CSI call; the secret check below would prove nothing")
	}
	if strings.Contains(out, "s3cret") {
		t.Errorf("a secret value reached the log")
	}
}

// Another driver's volume is left alone.
func TestExpandIgnoresOtherDrivers(t *testing.T) {
	e := newEnv(t, fakedriver.Options{}, DefaultConfig())
	pvc, pv := e.boundVolume("foreign", "1Gi", withDriver("other.csi-hub.io"))
	e.request(pvc.Name, "2Gi")
	time.Sleep(2 * time.Second)
	if n := e.drv.Calls("ControllerExpandVolume"); n != 0 {
		t.Errorf("ControllerExpandVolume calls = %d, want 0", n)
	}
	got := e.pvc(pvc.Name)
	if len(got.Status.AllocatedResources) != 0 || len(got.Status.Conditions) != 0 {
		t.Errorf("foreign PVC status touched: %+v", got.Status)
	}
	if q := e.pv(pv.Name).Spec.Capacity[v1.ResourceStorage]; !quantityIs(q, "1Gi") {
		t.Errorf("foreign PV capacity = %s, want 1Gi", q.String())
	}
}
