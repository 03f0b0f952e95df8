package attacher_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/csi-hub/csi-hub/attacher"
	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// TestAttachErrorRetriedThenCleared: a failing ControllerPublishVolume is
// reported in status.attachError (message and gRPC code) and as a Warning
// event, retried with backoff, and the error is cleared by the success.
func TestAttachErrorRetriedThenCleared(t *testing.T) {
	e := newEnv(t, "atterr", fakedriver.Options{Attach: true})
	e.registerNode()
	e.driver.InjectError("ControllerPublishVolume", codes.Internal, "disk on fire", fakedriver.Forever)
	e.startHub()
	pv, _ := e.volume("data")
	e.pod("app", "data")
	va := e.va(pv)
	va = e.waitVA(va.Name, "to report the attach error", time.Minute, func(va *storagev1.VolumeAttachment) bool {
		return va.Status.AttachError != nil
	})
	if msg := va.Status.AttachError.Message; !strings.Contains(msg, "disk on fire") || !strings.Contains(msg, "ControllerPublishVolume") {
		t.Errorf("attachError message %q should name the call and carry the driver's message", msg)
	}
	if c := va.Status.AttachError.ErrorCode; c == nil || *c != int32(codes.Internal) {
		t.Errorf("attachError errorCode = %v, want %d (Internal)", c, codes.Internal)
	}
	if va.Status.Attached {
		t.Error("attached=true although every publish failed")
	}
	e.expectWarning(va.Name, "AttachFailed", "disk on fire")
	// Backoff: retries go on, but spaced (100ms doubling to 2s in tests), not in a storm.
	first := e.driver.Calls("ControllerPublishVolume")
	time.Sleep(3 * time.Second)
	retries := e.driver.Calls("ControllerPublishVolume") - first
	if retries < 1 || retries > 6 {
		t.Errorf("%d publish retries in 3s; want a few, spaced by exponential backoff", retries)
	}

	e.driver.ClearFaults()
	va = e.waitVA(va.Name, "attached after the fault is gone", time.Minute, func(va *storagev1.VolumeAttachment) bool {
		return va.Status.Attached
	})
	if va.Status.AttachError != nil {
		t.Errorf("attachError not cleared by the successful attach: %+v", va.Status.AttachError)
	}
	t.Logf("publish calls: %d (first failure reported, %d retries in 3s)", e.driver.Calls("ControllerPublishVolume"), retries)
	e.deletePod("app")
	e.waitVAGone(va.Name)
	e.releasePV("data", pv)
}

// TestDetachErrorRetriedThenCleared: a failing ControllerUnpublishVolume
// keeps the finalizer (the VolumeAttachment cannot vanish while the volume
// may still be attached), reports status.detachError and a Warning event,
// and the deletion completes once the driver recovers.
func TestDetachErrorRetriedThenCleared(t *testing.T) {
	e := newEnv(t, "deterr", fakedriver.Options{Attach: true})
	e.registerNode()
	e.startHub()
	pv, handle := e.volume("data")
	e.pod("app", "data")
	va := e.va(pv)
	e.waitVA(va.Name, "attached", time.Minute, func(va *storagev1.VolumeAttachment) bool { return va.Status.Attached })

	e.driver.InjectError("ControllerUnpublishVolume", codes.Unavailable, "array rebooting", fakedriver.Forever)
	e.deletePod("app")
	va = e.waitVA(va.Name, "to report the detach error", 2*time.Minute, func(va *storagev1.VolumeAttachment) bool {
		return va.Status.DetachError != nil
	})
	if msg := va.Status.DetachError.Message; !strings.Contains(msg, "array rebooting") {
		t.Errorf("detachError message %q lacks the driver's message", msg)
	}
	if va.DeletionTimestamp == nil || len(va.Finalizers) == 0 {
		t.Errorf("VolumeAttachment should be held by our finalizer while detach fails: finalizers %v", va.Finalizers)
	}
	if !va.Status.Attached {
		t.Error("attached=false although the volume was never unpublished")
	}
	e.expectWarning(va.Name, "DetachFailed", "array rebooting")
	if v, _ := e.driver.Volume(handle); len(v.Attachments) != 1 {
		t.Errorf("backend attachments = %+v, want the one still published", v.Attachments)
	}

	e.driver.ClearFaults()
	e.waitVAGone(va.Name)
	if v, _ := e.driver.Volume(handle); len(v.Attachments) != 0 {
		t.Errorf("backend attachments after detach = %+v", v.Attachments)
	}
	e.releasePV("data", pv)
}

// TestAttachWaitsForNodeRegistration: without the driver's entry in the
// node's CSINode there is no node ID; the attach error says what is missing
// and nothing is published (and the VolumeAttachment gets no finalizer). Once
// the node plugin registers, the retry attaches. (TestNodeIDFromCSINode is
// the unit test of the lookup.)
func TestAttachWaitsForNodeRegistration(t *testing.T) {
	e := newEnv(t, "nocsinode", fakedriver.Options{Attach: true})
	e.startHub()
	pv, _ := e.volume("data")
	e.pod("app", "data")
	va := e.va(pv)
	va = e.waitVA(va.Name, "to report the missing CSINode", time.Minute, func(va *storagev1.VolumeAttachment) bool {
		return va.Status.AttachError != nil
	})
	if msg := va.Status.AttachError.Message; !strings.Contains(msg, `CSINode "`+e.node+`" not found`) {
		t.Errorf("attachError %q should say the CSINode is missing", msg)
	}
	if len(va.Finalizers) != 0 {
		t.Errorf("VolumeAttachment got finalizers %v before anything could be published", va.Finalizers)
	}

	// Another driver registers on the node: still no ID for ours.
	if _, err := e.c.CreateCSINode(e.ctx, e.node, "other.csi-hub.io", "other-id", nil); err != nil {
		t.Fatal(err)
	}
	e.waitVA(va.Name, "to report the driver missing from the CSINode", time.Minute, func(va *storagev1.VolumeAttachment) bool {
		return va.Status.AttachError != nil && strings.Contains(va.Status.AttachError.Message, "does not list driver "+e.name)
	})
	if n := e.driver.Calls("ControllerPublishVolume"); n != 0 {
		t.Errorf("ControllerPublishVolume called %d times without a node ID", n)
	}

	e.registerNode()
	va = e.waitVA(va.Name, "attached once the node plugin registered", time.Minute, func(va *storagev1.VolumeAttachment) bool {
		return va.Status.Attached
	})
	if va.Annotations[attacher.NodeIDAnnotation] != e.nodeID || va.Status.AttachError != nil {
		t.Errorf("after registration: node-id %q attachError %+v", va.Annotations[attacher.NodeIDAnnotation], va.Status.AttachError)
	}
	e.deletePod("app")
	e.waitVAGone(va.Name)
	e.releasePV("data", pv)
}

// TestUnrelatedVolumeAttachmentsIgnored: VolumeAttachments of another
// attacher are not touched.
func TestUnrelatedVolumeAttachmentsIgnored(t *testing.T) {
	e := newEnv(t, "unrelated", fakedriver.Options{Attach: true})
	e.registerNode()
	e.startHub()
	other := &storagev1.VolumeAttachment{
		ObjectMeta: metav1.ObjectMeta{Name: e.ns + "-other"},
		Spec: storagev1.VolumeAttachmentSpec{
			Attacher: "someone-else.csi-hub.io",
			NodeName: e.node,
			Source:   storagev1.VolumeAttachmentSource{PersistentVolumeName: &e.ns},
		},
	}
	if _, err := e.c.Client.StorageV1().VolumeAttachments().Create(e.ctx, other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = e.c.Client.StorageV1().VolumeAttachments().Delete(e.ctx, other.Name, metav1.DeleteOptions{})
	})
	// A VolumeAttachment of ours, created after it, is handled: so the other one has been seen too.
	pv, _ := e.volume("data")
	e.pod("app", "data")
	va := e.va(pv)
	e.waitVA(va.Name, "attached", time.Minute, func(va *storagev1.VolumeAttachment) bool { return va.Status.Attached })
	got, err := e.c.Client.StorageV1().VolumeAttachments().Get(e.ctx, other.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Status.Attached || got.Status.AttachError != nil || len(got.Finalizers) != 0 || got.ResourceVersion != mustRV(t, e, other.Name) {
		t.Errorf("another attacher's VolumeAttachment was modified: %+v", got)
	}
}

func mustRV(t *testing.T, e *env, name string) string {
	t.Helper()
	va, err := e.c.Client.StorageV1().VolumeAttachments().Get(e.ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return va.ResourceVersion
}
