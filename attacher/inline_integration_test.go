package attacher_test

import (
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/csi-hub/csi-hub/attacher"
	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// TestInlineVolumeSpec: a VolumeAttachment carrying an (already translated)
// inline CSI spec instead of a PV name is published from that spec, and
// unpublished when deleted; there is no PV to protect.
func TestInlineVolumeSpec(t *testing.T) {
	e := newEnv(t, "inline", fakedriver.Options{Attach: true})
	e.registerNode()
	e.startHub()
	handle := e.ns + "-inline"
	if _, err := e.driver.AddVolume(fakedriver.Volume{ID: handle, Name: handle, CapacityBytes: 1 << 30}); err != nil {
		t.Fatal(err)
	}
	va := &storagev1.VolumeAttachment{
		ObjectMeta: metav1.ObjectMeta{Name: e.ns + "-va"},
		Spec: storagev1.VolumeAttachmentSpec{
			Attacher: e.name, NodeName: e.node,
			Source: storagev1.VolumeAttachmentSource{InlineVolumeSpec: &corev1.PersistentVolumeSpec{
				AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
					Driver: e.name, VolumeHandle: handle, FSType: "xfs"}},
			}},
		},
	}
	created, err := e.c.Client.StorageV1().VolumeAttachments().Create(e.ctx, va, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := e.awaitVA(va.Name, created.ResourceVersion, attached)
	if got.Annotations[attacher.NodeIDAnnotation] != e.nodeID || len(got.Status.AttachmentMetadata) == 0 {
		t.Errorf("inline attach: annotations %v metadata %v", got.Annotations, got.Status.AttachmentMetadata)
	}
	if req, ok := fakedriver.LastRequest[*csi.ControllerPublishVolumeRequest](e.driver); !ok ||
		req.GetVolumeId() != handle || req.GetVolumeCapability().GetMount().GetFsType() != "xfs" {
		t.Errorf("publish request from the inline spec: %v", req)
	}
	if v, _ := e.driver.Volume(handle); len(v.Attachments) != 1 {
		t.Errorf("backend attachments %+v", v.Attachments)
	}
	if w := e.hub.Steps.Writes()["patch persistentvolumes"]; w != 0 {
		t.Errorf("%d PV writes for an inline volume", w)
	}
	e.deleteVA(va.Name)
	e.awaitVA(va.Name, got.ResourceVersion, gone)
	if v, _ := e.driver.Volume(handle); len(v.Attachments) != 0 {
		t.Errorf("backend attachments after delete %+v", v.Attachments)
	}
}
