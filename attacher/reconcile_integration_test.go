package attacher_test

import (
	"context"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// TestReconcilerRepublishesForgottenVolume: with LIST_VOLUMES_PUBLISHED_NODES
// the reconciler notices that the backend lost a publication the
// VolumeAttachment still claims, and publishes the volume again, without
// rewriting the (unchanged) status. ListVolumes is paged (--max-entries=1)
// and the volume sits on the last page.
func TestReconcilerRepublishesForgottenVolume(t *testing.T) {
	e := newEnv(t, "reconcile", fakedriver.Options{Attach: true, ListPublishedNodes: true})
	e.registerNode()
	e.cfg.ReconcileSync = time.Second
	e.cfg.MaxEntries = 1
	for _, id := range []string{"0-first-page", "0-second-page"} { // sort before the test's volume
		if _, err := e.driver.AddVolume(fakedriver.Volume{ID: id, Name: id, CapacityBytes: 1 << 20}); err != nil {
			t.Fatal(err)
		}
	}
	e.startHub()
	pv, handle := e.volume("data")
	e.pod("app", "data")
	va := e.va(pv)
	va = e.waitVA(va.Name, "attached", time.Minute, func(va *storagev1.VolumeAttachment) bool { return va.Status.Attached })
	statusWrites := e.hub.Steps.Writes()["patch volumeattachments/status"]

	// The backend forgets the publication behind Kubernetes' back.
	forget(t, e, handle)
	if v, _ := e.driver.Volume(handle); len(v.Attachments) != 0 {
		t.Fatalf("backend still lists attachments %+v", v.Attachments)
	}
	forgotAt := time.Now()
	e.waitFor("the reconciler to publish the volume again", 30*time.Second, func() (bool, error) {
		v, _ := e.driver.Volume(handle)
		_, ok := v.Attachments[e.nodeID]
		return ok, nil
	})
	t.Logf("re-published %v after the backend lost it (--reconcile-sync=1s)", time.Since(forgotAt).Round(time.Millisecond))
	if n := e.driver.Calls("ControllerPublishVolume"); n != 2 {
		t.Errorf("ControllerPublishVolume calls = %d, want 2 (attach + one re-publish)", n)
	}
	paged := false
	for _, req := range fakedriver.RequestsOf[*csi.ListVolumesRequest](e.driver) {
		if req.GetMaxEntries() != 1 {
			t.Fatalf("ListVolumes max_entries = %d, want --max-entries=1", req.GetMaxEntries())
		}
		paged = paged || req.GetStartingToken() != ""
	}
	if !paged {
		t.Error("ListVolumes was never asked for a next page")
	}
	got, err := e.c.Client.StorageV1().VolumeAttachments().Get(e.ctx, va.Name, metav1.GetOptions{})
	if err != nil || !got.Status.Attached {
		t.Fatalf("VolumeAttachment after re-publish: %+v, %v", got, err)
	}
	// Same publish context: nothing to write.
	if w := e.hub.Steps.Writes()["patch volumeattachments/status"]; w != statusWrites {
		t.Errorf("status written %d more times for an unchanged status", w-statusWrites)
	}
	// A second round with everything in step does nothing.
	time.Sleep(2500 * time.Millisecond)
	if n := e.driver.Calls("ControllerPublishVolume"); n != 2 {
		t.Errorf("ControllerPublishVolume calls = %d after an in-step reconcile, want still 2", n)
	}
	e.deletePod("app")
	e.waitVAGone(va.Name)
	e.releasePV("data", pv)
}

// forget makes the fake backend drop the volume's publication, as an array
// that lost its state would, by calling the driver directly.
func forget(t *testing.T, e *env, handle string) {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+e.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	if _, err := csi.NewControllerClient(conn).ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{
		VolumeId: handle, NodeId: e.nodeID,
	}); err != nil {
		t.Fatal(err)
	}
}
