package resizer

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/csi-hub/csi-hub/internal/hub"
	"github.com/csi-hub/csi-hub/test/fakedriver"
)

const inUseText = "only supports offline expansion and volume is currently in-use"

// quickRetries: the PVC is retried every 200ms at most, so a resizer that
// ignored the Pod would call the driver again many times within the wait.
func quickRetries(o *hub.Options) {
	o.RetryIntervalStart, o.RetryIntervalMax = 100*time.Millisecond, 200*time.Millisecond
}

// A driver that cannot expand volumes in use answers FailedPrecondition;
// while a Pod mounts the claim the driver is not called again, the PVC gets
// upstream's Warning, and once the Pod is gone the expansion goes through
// at once. Both a plain claim and a generic ephemeral volume's claim.
func TestInUseErrorWaitsForPods(t *testing.T) {
	e := newEnv(t, fakedriver.Options{}, DefaultConfig(), withHubOptions(quickRetries))
	for _, tc := range []struct {
		name      string
		ephemeral bool
	}{{"plain", false}, {"ephemeral", true}} {
		t.Run(tc.name, func(t *testing.T) {
			pod := "app-" + tc.name
			claim := tc.name + "-data"
			if tc.ephemeral {
				claim = pod + "-data" // the ephemeral volume controller's name for it
			}
			e.boundVolume(claim, "1Gi")
			e.createPod(pod, claim, tc.ephemeral)
			e.drv.ResetCalls()
			e.drv.InjectError("ControllerExpandVolume", codes.FailedPrecondition, "volume is published", 1)
			e.request(claim, "2Gi")
			e.waitEvent(claim, reasonResizeFailed, v1.EventTypeWarning, "volume is published")
			e.waitEvent(claim, reasonResizeFailed, v1.EventTypeWarning, inUseText)
			time.Sleep(2 * time.Second) // ~10 retry intervals
			if n := e.drv.Calls("ControllerExpandVolume"); n != 1 {
				t.Errorf("ControllerExpandVolume called %d times while a Pod uses the claim, want 1", n)
			}
			if got := e.pvc(claim).Status.Capacity[v1.ResourceStorage]; !quantityIs(got, "1Gi") {
				t.Errorf("capacity = %s while in use, want 1Gi", got.String())
			}
			zero := int64(0)
			deleted := time.Now()
			if err := e.kube.CoreV1().Pods(e.ns).Delete(e.ctx, pod, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
				t.Fatal(err)
			}
			e.waitPVC(claim, "capacity 2Gi", func(c *v1.PersistentVolumeClaim) bool {
				return quantityIs(c.Status.Capacity[v1.ResourceStorage], "2Gi")
			})
			t.Logf("expanded %v after the Pod was deleted", time.Since(deleted).Round(time.Millisecond))
			if n := e.drv.Calls("ControllerExpandVolume"); n != 2 {
				t.Errorf("ControllerExpandVolume called %d times, want 2 (the refused call and one after the Pod left)", n)
			}
		})
	}
}

// With --handle-volume-inuse-error=false the Pod is not looked at: the
// expansion is retried with backoff and succeeds while the Pod still exists.
func TestInUseErrorFlagOff(t *testing.T) {
	cfg := DefaultConfig()
	cfg.HandleVolumeInUseError = false
	e := newEnv(t, fakedriver.Options{}, cfg, withHubOptions(quickRetries))
	if e.ctrl.expand.users != nil {
		t.Fatal("the Pod informer is registered with --handle-volume-inuse-error=false")
	}
	e.boundVolume("data", "1Gi")
	e.createPod("app", "data", false)
	e.drv.InjectError("ControllerExpandVolume", codes.FailedPrecondition, "volume is published", 1)
	e.request("data", "2Gi")
	e.waitPVC("data", "capacity 2Gi with the Pod still there", func(c *v1.PersistentVolumeClaim) bool {
		return quantityIs(c.Status.Capacity[v1.ResourceStorage], "2Gi")
	})
	if evs := e.events("data", reasonResizeFailed); len(evs) == 0 {
		t.Error("no VolumeResizeFailed event for the refused call")
	}
	for _, ev := range e.events("data", reasonResizeFailed) {
		if strings.Contains(ev.Message, inUseText) {
			t.Errorf("in-use event with the flag off: %s", ev.Message)
		}
	}
}

// createPod creates a Pod that mounts claim (or, ephemeral, a generic
// ephemeral volume named "data"). No scheduler picks it up: a Pending Pod
// counts as using its claims, as upstream.
func (e *env) createPod(name, claim string, ephemeral bool) {
	e.t.Helper()
	vol := v1.Volume{Name: "data", VolumeSource: v1.VolumeSource{PersistentVolumeClaim: &v1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}}
	if ephemeral {
		vol.VolumeSource = v1.VolumeSource{Ephemeral: &v1.EphemeralVolumeSource{VolumeClaimTemplate: &v1.PersistentVolumeClaimTemplate{
			Spec: v1.PersistentVolumeClaimSpec{AccessModes: []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce}, StorageClassName: &e.sc,
				Resources: v1.VolumeResourceRequirements{Requests: v1.ResourceList{v1.ResourceStorage: resource.MustParse("1Gi")}}}}}}
	}
	no := false
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns}, Spec: v1.PodSpec{
		SchedulerName: "csi-hub-test-none", AutomountServiceAccountToken: &no,
		Containers: []v1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}},
		Volumes:    []v1.Volume{vol},
	}}
	// The namespace's default ServiceAccount, which admission wants, is
	// created by kube-controller-manager shortly after the namespace.
	e.eventually(30*time.Second, "Pod "+name+" created", func() (bool, error) {
		_, err := e.kube.CoreV1().Pods(e.ns).Create(e.ctx, pod, metav1.CreateOptions{})
		return err == nil, nil
	})
	e.t.Cleanup(func() {
		zero := int64(0)
		_ = e.kube.CoreV1().Pods(e.ns).Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	})
}
