package attacher_test

import (
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// TestPublishArgumentsFromPV: a raw block, read-only-many PV with a
// controllerPublishSecretRef is published as a block capability with
// MULTI_NODE_READER_ONLY and the secret's data; readonly stays false because
// the driver lacks PUBLISH_READONLY (the CSI spec requires that).
func TestPublishArgumentsFromPV(t *testing.T) {
	e := newEnv(t, "pubargs", fakedriver.Options{Attach: true})
	e.registerNode()
	e.startHub()
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: "publish-creds"},
		Data:       map[string][]byte{"user": []byte("admin"), "token": []byte("s3cr3t")},
	}
	if _, err := e.c.Client.CoreV1().Secrets(e.ns).Create(e.ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rox := []corev1.PersistentVolumeAccessMode{corev1.ReadOnlyMany}
	pv, handle := e.volumeWith("data", func(pv *corev1.PersistentVolume, pvc *corev1.PersistentVolumeClaim) {
		pv.Spec.AccessModes, pvc.Spec.AccessModes = rox, rox
		pv.Spec.VolumeMode, pvc.Spec.VolumeMode = ptr.To(corev1.PersistentVolumeBlock), ptr.To(corev1.PersistentVolumeBlock)
		pv.Spec.CSI.ReadOnly = true
		pv.Spec.CSI.ControllerPublishSecretRef = &corev1.SecretReference{Namespace: e.ns, Name: "publish-creds"}
	})
	e.podBlock("app", "data")
	va := e.va(pv)
	e.waitVA(va.Name, "attached", time.Minute, func(va *storagev1.VolumeAttachment) bool { return va.Status.Attached })

	req, ok := fakedriver.LastRequest[*csi.ControllerPublishVolumeRequest](e.driver)
	if !ok {
		t.Fatal("no ControllerPublishVolume received")
	}
	if req.GetVolumeId() != handle || req.GetVolumeCapability().GetBlock() == nil {
		t.Errorf("want a block capability for %s, got %v", handle, req.GetVolumeCapability())
	}
	if m := req.GetVolumeCapability().GetAccessMode().GetMode(); m != csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY {
		t.Errorf("access mode = %s, want MULTI_NODE_READER_ONLY", m)
	}
	if req.GetReadonly() {
		t.Error("readonly=true sent to a driver without PUBLISH_READONLY")
	}
	if s := req.GetSecrets(); s["user"] != "admin" || s["token"] != "s3cr3t" || len(s) != 2 {
		t.Errorf("secrets passed = %d keys, want the controllerPublishSecretRef's two", len(s))
	}
	e.deletePod("app")
	e.waitVAGone(va.Name)
	unpub, _ := fakedriver.LastRequest[*csi.ControllerUnpublishVolumeRequest](e.driver)
	if unpub.GetSecrets()["token"] != "s3cr3t" {
		t.Error("ControllerUnpublishVolume did not get the controllerPublishSecretRef's data")
	}
	e.releasePV("data", pv)
}
