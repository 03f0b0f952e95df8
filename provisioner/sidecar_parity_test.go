package provisioner

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/csi-hub/csi-hub/internal/testutil"
	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// After CreateVolume answers InvalidArgument the same claim is not sent again
// before --retry-interval-max (2s in these tests), as
// sig-storage-lib-external-provisioner's slow set; the ordinary backoff from
// 100ms would have called about five times by then.
func TestSlowRetryAfterInvalidArgument(t *testing.T) {
	e := newEnv(t, fakedriver.Options{}, DefaultConfig())
	sc := e.storageClass("sc")
	e.drv.InjectError("CreateVolume", codes.InvalidArgument, "parameter foo is not supported", 1000)
	pvc := e.createPVC("bad", sc.Name, "1Gi")
	name := "pvc-" + string(pvc.UID)
	e.eventually(10*time.Second, "first CreateVolume", func() (bool, error) { return len(e.createRequests(name)) >= 1, nil })
	time.Sleep(1500 * time.Millisecond)
	if n := len(e.createRequests(name)); n != 1 {
		t.Fatalf("%d CreateVolume calls within 1.5s of an InvalidArgument, want 1 (slow retry after --retry-interval-max)", n)
	}
	e.eventually(10*time.Second, "the retry after --retry-interval-max", func() (bool, error) { return len(e.createRequests(name)) >= 2, nil })
	// Fixed in the driver: the next slow retry provisions.
	e.drv.ClearFaults()
	e.waitBound("bad")
}

// Deletion blocked by a VolumeAttachment is postponed, not failed: a Normal
// VolumeDelete event (external-provisioner v6.4, #1588), no Warning, and the
// PV goes once the attachment is gone.
func TestDeleteBlockedByAttachmentIsNormalEvent(t *testing.T) {
	e := newEnv(t, fakedriver.Options{Attach: true}, DefaultConfig())
	sc := e.storageClass("sc", withPolicy(v1.PersistentVolumeReclaimDelete))
	e.createPVC("data", sc.Name, "1Gi")
	_, pv := e.waitBound("data")
	va := &storagev1.VolumeAttachment{ObjectMeta: metav1.ObjectMeta{Name: "va-" + e.ns},
		Spec: storagev1.VolumeAttachmentSpec{Attacher: e.driver, NodeName: "node-1",
			Source: storagev1.VolumeAttachmentSource{PersistentVolumeName: &pv.Name}}}
	if _, err := e.kube.StorageV1().VolumeAttachments().Create(e.ctx, va, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.kube.StorageV1().VolumeAttachments().Delete(e.ctx, va.Name, metav1.DeleteOptions{}) })
	e.deletePVC("data")
	ev := testutil.WaitEvent(t, e.ctx, e.kube, metav1.NamespaceDefault, pv.Name, reasonVolumeDelete, v1.EventTypeNormal,
		fmt.Sprintf("persistentvolume %s is still attached to node node-1, waiting for detach", pv.Name))
	t.Logf("event: %s %s %q", ev.Type, ev.Reason, ev.Message)
	if w := testutil.Events(t, e.ctx, e.kube, metav1.NamespaceDefault, pv.Name, reasonVolumeFailedDelete); len(w) > 0 {
		t.Errorf("a VolumeFailedDelete Warning for a deletion that only waits for detach: %q", w[0].Message)
	}
	if n := e.drv.Calls("DeleteVolume"); n != 0 {
		t.Fatalf("DeleteVolume called %d times while attached", n)
	}
	if err := e.kube.StorageV1().VolumeAttachments().Delete(e.ctx, va.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitPVGone(pv.Name)
}

// --prevent-volume-mode-conversion=false lets a restore change the volume
// mode without the content's annotation, as the sidecar with the flag off.
func TestVolumeModeConversionAllowedWhenNotPrevented(t *testing.T) {
	cfg := DefaultConfig()
	cfg.PreventVolumeModeConversion = false
	e := baseEnv(t, cfg)
	e.startFake(fakedriver.Options{})
	s := &sourceEnv{env: e}
	s.startHub()
	sc := s.storageClass("sc", withPolicy(v1.PersistentVolumeReclaimDelete))
	s.createPVC("data", sc.Name, "1Gi")
	s.waitBound("data")
	_, content := s.takeSnapshot("snap", "data", s.snapshotClass())
	if content.Spec.SourceVolumeMode == nil || *content.Spec.SourceVolumeMode != v1.PersistentVolumeFilesystem {
		t.Fatalf("content sourceVolumeMode %v, want Filesystem", content.Spec.SourceVolumeMode)
	}
	s.createPVC("raw", sc.Name, "1Gi", fromSnapshot("snap"), blockMode)
	_, pv := s.waitBound("raw")
	if vol, _ := s.drv.Volume(pv.Spec.CSI.VolumeHandle); !vol.Block {
		t.Errorf("backend volume %+v, want a block volume restored from the filesystem snapshot", vol)
	}
}

// --capacity-threads GetCapacity calls run at once (three classes, three
// threads: all three are in the driver together; one thread: one at a time).
func TestCapacityThreads(t *testing.T) {
	for _, threads := range []int{3, 1} {
		t.Run(fmt.Sprint(threads), func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.EnableCapacity = true
			cfg.CapacityForImmediateBinding = true
			cfg.CapacityOwnerrefLevel = -1
			cfg.CapacityPollInterval = time.Hour
			cfg.CapacityThreads = threads
			cfg.KubeAPICapacityQPS, cfg.KubeAPICapacityBurst = 1, 5
			e := baseEnv(t, cfg)
			t.Setenv("NAMESPACE", e.ns)
			e.startFake(fakedriver.Options{})
			for _, n := range []string{"a", "b", "c"} {
				e.storageClass(n)
			}
			gate := e.drv.Gate("GetCapacity")
			t.Cleanup(gate.Release)
			e.startHub()
			if err := gate.WaitArrived(e.ctx); err != nil {
				t.Fatal(err)
			}
			// CSIStorageCapacity writes have their own budget, not the hub's.
			if qps := e.ctrl.capacity.Writer().StorageV1().RESTClient().GetRateLimiter().QPS(); qps != 1 {
				t.Errorf("capacity client QPS %v, want --kube-api-capacity-qps 1 (hub: %v)", qps, e.hub.Opts.KubeAPIQPS)
			}
			time.Sleep(time.Second) // room for more calls to arrive
			if held := gate.Held(); held != threads {
				t.Errorf("--capacity-threads=%d: %d GetCapacity calls in the driver at once", threads, held)
			}
			gate.Release()
		})
	}
}
