package attacher_test

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/csi-hub/csi-hub/attacher"
	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// TestAttachDetach walks the whole protocol with a driver that publishes:
// pod -> VolumeAttachment -> finalizers + node-id -> ControllerPublishVolume ->
// attached with the publish context; pod gone -> ControllerUnpublishVolume ->
// VolumeAttachment gone; PV deleted -> PV finalizer released.
func TestAttachDetach(t *testing.T) {
	e := newEnv(t, "attach", fakedriver.Options{Attach: true})
	e.registerNode()
	e.startHub()
	if e.ctrl.Mode() != "publish" {
		t.Fatalf("mode = %s, want publish for a driver with PUBLISH_UNPUBLISH_VOLUME", e.ctrl.Mode())
	}
	pv, handle := e.volume("data")
	e.pod("app", "data")
	va := e.va(pv)
	began := time.Now() // the test sees the VolumeAttachment within 100ms of its creation
	va = e.waitVA(va.Name, "attached", time.Minute, func(va *storagev1.VolumeAttachment) bool { return va.Status.Attached })
	attachLatency := time.Since(began)

	finalizer := attacher.FinalizerName(e.name)
	if finalizer != "external-attacher/attach-fake-csi-hub-io" {
		t.Errorf("finalizer name %q does not follow upstream's sanitising", finalizer)
	}
	if !slices.Contains(va.Finalizers, finalizer) {
		t.Errorf("VolumeAttachment finalizers %v lack %s", va.Finalizers, finalizer)
	}
	if got := va.Annotations[attacher.NodeIDAnnotation]; got != e.nodeID {
		t.Errorf("node-id annotation = %q, want %q", got, e.nodeID)
	}
	wantMD := map[string]string{fakedriver.PublishContextDevice: "/dev/fake/" + handle, fakedriver.PublishContextNode: e.nodeID}
	if !maps.Equal(va.Status.AttachmentMetadata, wantMD) {
		t.Errorf("attachmentMetadata = %v, want the publish context %v", va.Status.AttachmentMetadata, wantMD)
	}
	if va.Status.AttachError != nil {
		t.Errorf("attachError left set: %+v", va.Status.AttachError)
	}
	gotPV, err := e.c.Client.CoreV1().PersistentVolumes().Get(e.ctx, pv, metav1.GetOptions{})
	if err != nil || !slices.Contains(gotPV.Finalizers, finalizer) {
		t.Errorf("PV finalizers %v lack %s (err %v)", gotPV.Finalizers, finalizer, err)
	}

	req, ok := fakedriver.LastRequest[*csi.ControllerPublishVolumeRequest](e.driver)
	if !ok {
		t.Fatal("driver received no ControllerPublishVolume")
	}
	if req.GetVolumeId() != handle || req.GetNodeId() != e.nodeID || req.GetReadonly() {
		t.Errorf("publish request volume %q node %q readonly %v", req.GetVolumeId(), req.GetNodeId(), req.GetReadonly())
	}
	if c := req.GetVolumeCapability(); c.GetMount().GetFsType() != "ext4" ||
		c.GetAccessMode().GetMode() != csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER {
		t.Errorf("publish capability = %v, want mount ext4 SINGLE_NODE_WRITER", c)
	}
	if req.GetVolumeContext()["origin"] != "attacher-test" {
		t.Errorf("volume context = %v, want the PV's volumeAttributes", req.GetVolumeContext())
	}
	if v, _ := e.driver.Volume(handle); v.Attachments[e.nodeID].PublishContext == nil {
		t.Errorf("backend does not record the attachment: %+v", v.Attachments)
	}
	publishCalls := e.driver.Calls("ControllerPublishVolume")
	writesAttach := e.hub.Steps.Writes()

	e.deletePod("app")
	detachBegan := time.Now()
	e.waitVAGone(va.Name)
	detachLatency := time.Since(detachBegan)
	if n := e.driver.Calls("ControllerUnpublishVolume"); n != 1 {
		t.Errorf("ControllerUnpublishVolume calls = %d, want 1", n)
	}
	unpub, _ := fakedriver.LastRequest[*csi.ControllerUnpublishVolumeRequest](e.driver)
	if unpub.GetVolumeId() != handle || unpub.GetNodeId() != e.nodeID {
		t.Errorf("unpublish request volume %q node %q", unpub.GetVolumeId(), unpub.GetNodeId())
	}
	if v, _ := e.driver.Volume(handle); len(v.Attachments) != 0 {
		t.Errorf("backend still has attachments after detach: %+v", v.Attachments)
	}
	// The PV keeps the finalizer while it exists (as upstream) and loses it on deletion.
	e.releasePV("data", pv)

	t.Logf("attach: VolumeAttachment seen -> attached in %v, %d ControllerPublishVolume call(s), API writes %v",
		attachLatency.Round(time.Millisecond), publishCalls, writesAttach)
	t.Logf("detach: node reports volume unused -> VolumeAttachment gone in %v; all writes %v",
		detachLatency.Round(time.Millisecond), e.hub.Steps.Writes())
	// Exactly the protocol's writes, nothing repeated: attach = PV finalizer,
	// VolumeAttachment finalizer+node-id, status; detach = VolumeAttachment
	// finalizer (it is gone then, so no status write), PV finalizer on deletion.
	wantAttach := map[string]int{"patch persistentvolumes": 1, "patch volumeattachments": 1, "patch volumeattachments/status": 1}
	wantAll := map[string]int{"patch persistentvolumes": 2, "patch volumeattachments": 2, "patch volumeattachments/status": 1}
	if !maps.Equal(writesAttach, wantAttach) {
		t.Errorf("attach writes %v, want %v", writesAttach, wantAttach)
	}
	if w := e.hub.Steps.Writes(); !maps.Equal(w, wantAll) {
		t.Errorf("attach+detach writes %v, want %v", w, wantAll)
	}
	if publishCalls != 1 {
		t.Errorf("ControllerPublishVolume calls = %d, want 1 (no repeated publish of an attached volume)", publishCalls)
	}
}

// TestTrivialAttacher: a driver without PUBLISH_UNPUBLISH_VOLUME gets its
// VolumeAttachments marked attached with no CSI call and no finalizers, so
// their deletion is immediate.
func TestTrivialAttacher(t *testing.T) {
	e := newEnv(t, "trivial", fakedriver.Options{})
	e.registerNode()
	e.startHub()
	if e.ctrl.Mode() != "trivial" {
		t.Fatalf("mode = %s, want trivial", e.ctrl.Mode())
	}
	pv, _ := e.volume("data")
	e.pod("app", "data")
	va := e.va(pv)
	va = e.waitVA(va.Name, "attached", time.Minute, func(va *storagev1.VolumeAttachment) bool { return va.Status.Attached })
	if len(va.Finalizers) != 0 || len(va.Annotations[attacher.NodeIDAnnotation]) != 0 {
		t.Errorf("trivial attach left finalizers %v / annotations %v", va.Finalizers, va.Annotations)
	}
	gotPV, err := e.c.Client.CoreV1().PersistentVolumes().Get(e.ctx, pv, metav1.GetOptions{})
	if err != nil || slices.Contains(gotPV.Finalizers, attacher.FinalizerName(e.name)) {
		t.Errorf("trivial attach put a finalizer on the PV: %v (err %v)", gotPV.Finalizers, err)
	}
	if n := e.driver.Calls("ControllerPublishVolume"); n != 0 {
		t.Errorf("ControllerPublishVolume called %d times by the trivial attacher", n)
	}
	e.deletePod("app")
	e.waitVAGone(va.Name)
	e.releasePV("data", pv)
	if n := e.driver.Calls("ControllerUnpublishVolume"); n != 0 {
		t.Errorf("ControllerUnpublishVolume called %d times by the trivial attacher", n)
	}
	if w := e.hub.Steps.Writes(); len(w) != 1 {
		t.Errorf("trivial attach should make exactly one kind of write (status patch), got %v", w)
	}
	t.Logf("trivial attacher writes: %v", e.hub.Steps.Writes())
}
