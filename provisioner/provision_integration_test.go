package provisioner

import (
	"maps"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// PVC -> CreateVolume -> PV -> bound by kube-controller-manager, with the PV
// checked field by field against what the sidecar writes; then PVC deleted ->
// Released -> DeleteVolume -> PV gone and the backend volume gone.
func TestProvisionBindAndDelete(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ExtraCreateMetadata = true
	e := newEnv(t, fakedriver.Options{Topology: true}, cfg)
	e.node("n1", "zone-a")

	// The provisioner secret's name is templated from the PVC's name and one of
	// its annotations (as the sidecar allows since v5); it must come from this
	// real Secret into CreateVolume and DeleteVolume.
	if _, err := e.kube.CoreV1().Secrets(e.ns).Create(e.ctx, &v1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "data-blue-creds"},
		Data:       map[string][]byte{"token": []byte("t0ps3cret")},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sc := e.storageClass("fast", withPolicy(v1.PersistentVolumeReclaimDelete), withParams(
		"type", "fast",
		keyFSType, "xfs",
		reservedPrefix+"provisioner-secret-name", "${pvc.name}-${pvc.annotations['team']}-creds",
		reservedPrefix+"provisioner-secret-namespace", "${pvc.namespace}",
		reservedPrefix+"node-publish-secret-name", "np-${pvc.annotations['team']}",
		reservedPrefix+"node-publish-secret-namespace", "${pvc.namespace}",
		reservedPrefix+"controller-expand-secret-name", "expand",
		reservedPrefix+"controller-expand-secret-namespace", "kube-system",
		reservedPrefix+"controller-modify-secret-name", "modify-${pv.name}",
		reservedPrefix+"controller-modify-secret-namespace", "kube-system",
	), func(s *storagev1.StorageClass) { s.MountOptions = []string{"noatime"} })
	fs := v1.PersistentVolumeFilesystem
	e.createPVC("data", sc.Name, "2Gi", func(p *v1.PersistentVolumeClaim) {
		p.Annotations = map[string]string{"team": "blue"}
		p.Spec.VolumeMode = &fs
		noClass := "" // allowed on a PVC, refused on a PV: must not reach the PV
		p.Spec.VolumeAttributesClassName = &noClass
	})
	pvc, pv := e.waitBound("data")
	wantName := "pvc-" + string(pvc.UID)

	// The CreateVolume request.
	reqs := e.createRequests(wantName)
	if len(reqs) != 1 {
		t.Fatalf("%d CreateVolume calls for %s, want 1", len(reqs), wantName)
	}
	req := reqs[0]
	wantParams := map[string]string{"type": "fast", keyPVCName: "data", keyPVCNS: e.ns, keyPVName: wantName}
	if !maps.Equal(req.Parameters, wantParams) {
		t.Errorf("CreateVolume parameters = %v, want %v", req.Parameters, wantParams)
	}
	if !maps.Equal(req.Secrets, map[string]string{"token": "t0ps3cret"}) {
		t.Errorf("CreateVolume secrets = %d keys, want the Secret data-creds", len(req.Secrets))
	}
	if len(req.VolumeCapabilities) != 1 ||
		req.VolumeCapabilities[0].GetAccessMode().GetMode() != csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER ||
		req.VolumeCapabilities[0].GetMount().GetFsType() != "xfs" ||
		!slices.Equal(req.VolumeCapabilities[0].GetMount().GetMountFlags(), []string{"noatime"}) {
		t.Errorf("CreateVolume capabilities = %v", req.VolumeCapabilities)
	}
	if req.CapacityRange.GetRequiredBytes() != 2<<30 {
		t.Errorf("required bytes %d, want 2Gi", req.CapacityRange.GetRequiredBytes())
	}
	if r := req.GetAccessibilityRequirements(); len(r.GetRequisite()) != 1 || r.Requisite[0].Segments[fakedriver.DefaultTopologyKey] != "zone-a" {
		t.Errorf("accessibility requirements %v, want requisite zone-a (the only node's)", r)
	}

	// The PV, exactly as the sidecar writes it.
	vol, ok := e.drv.VolumeByName(wantName)
	if !ok {
		t.Fatalf("backend has no volume %s", wantName)
	}
	if pv.Name != wantName {
		t.Errorf("PV name %s, want %s", pv.Name, wantName)
	}
	wantAnn := map[string]string{annDynamicallyProvisioned: e.driver, annDeletionSecretName: "data-blue-creds", annDeletionSecretNamespace: e.ns,
		annModifySecretName: "modify-" + wantName, annModifySecretNamespace: "kube-system"}
	for k, v := range wantAnn {
		if pv.Annotations[k] != v {
			t.Errorf("PV annotation %s = %q, want %q", k, pv.Annotations[k], v)
		}
	}
	if !slices.Contains(pv.Finalizers, finalizerPV) {
		t.Errorf("PV finalizers %v lack %s", pv.Finalizers, finalizerPV)
	}
	if ref := pv.Spec.ClaimRef; ref == nil || ref.UID != pvc.UID || ref.Name != "data" || ref.Namespace != e.ns || ref.Kind != "PersistentVolumeClaim" {
		t.Errorf("PV claimRef %+v", pv.Spec.ClaimRef)
	}
	if q := pv.Spec.Capacity[v1.ResourceStorage]; q.Cmp(*resource.NewQuantity(vol.CapacityBytes, resource.BinarySI)) != 0 || vol.CapacityBytes < 2<<30 {
		t.Errorf("PV capacity %s, backend volume %d bytes", q.String(), vol.CapacityBytes)
	}
	src := pv.Spec.CSI
	if src == nil || src.Driver != e.driver || src.VolumeHandle != vol.ID || src.FSType != "xfs" {
		t.Fatalf("PV csi source %+v, want driver %s handle %s fsType xfs", src, e.driver, vol.ID)
	}
	wantAttrs := maps.Clone(vol.VolumeContext)
	wantAttrs[provisionerIDKey] = e.ctrl.Identity()
	if !maps.Equal(src.VolumeAttributes, wantAttrs) {
		t.Errorf("PV volumeAttributes %v, want %v", src.VolumeAttributes, wantAttrs)
	}
	if !reflect.DeepEqual(src.NodePublishSecretRef, &v1.SecretReference{Name: "np-blue", Namespace: e.ns}) ||
		!reflect.DeepEqual(src.ControllerExpandSecretRef, &v1.SecretReference{Name: "expand", Namespace: "kube-system"}) ||
		src.NodeStageSecretRef != nil || src.ControllerPublishSecretRef != nil || src.NodeExpandSecretRef != nil {
		t.Errorf("PV secret refs: publish %v stage %v nodePublish %v ctrlExpand %v nodeExpand %v", src.ControllerPublishSecretRef,
			src.NodeStageSecretRef, src.NodePublishSecretRef, src.ControllerExpandSecretRef, src.NodeExpandSecretRef)
	}
	if pv.Spec.PersistentVolumeReclaimPolicy != v1.PersistentVolumeReclaimDelete || pv.Spec.StorageClassName != sc.Name ||
		pv.Spec.VolumeMode == nil || *pv.Spec.VolumeMode != v1.PersistentVolumeFilesystem ||
		!slices.Equal(pv.Spec.MountOptions, []string{"noatime"}) || !slices.Equal(pv.Spec.AccessModes, pvc.Spec.AccessModes) {
		t.Errorf("PV spec %+v", pv.Spec)
	}
	wantAffinity := &v1.VolumeNodeAffinity{Required: &v1.NodeSelector{NodeSelectorTerms: []v1.NodeSelectorTerm{{MatchExpressions: []v1.NodeSelectorRequirement{
		{Key: fakedriver.DefaultTopologyKey, Operator: v1.NodeSelectorOpIn, Values: []string{"zone-a"}}}}}}}
	if !reflect.DeepEqual(pv.Spec.NodeAffinity, wantAffinity) {
		t.Errorf("PV nodeAffinity %+v, want %+v", pv.Spec.NodeAffinity, wantAffinity)
	}

	// Events and API writes: one PV create, no PVC writes, two events.
	e.waitEvent("data", reasonProvisioning, v1.EventTypeNormal, "External provisioner is provisioning volume")
	e.waitEvent("data", reasonSucceeded, v1.EventTypeNormal, "Successfully provisioned volume "+wantName)
	writes := e.hub.Steps.Writes()
	if writes["create persistentvolumes"] != 1 {
		t.Errorf("writes %v: want exactly one PV create", writes)
	}
	for k, n := range writes {
		if k != "create persistentvolumes" && k != "create events" && k != "patch events" {
			t.Errorf("unexpected write %q x%d while provisioning (writes %v)", k, n, writes)
		}
	}

	// Delete: PVC gone -> PV Released -> DeleteVolume with the deletion secret -> PV and volume gone.
	before := e.hub.Steps.Writes()
	e.deletePVC("data")
	e.waitPVGone(wantName)
	after := e.hub.Steps.Writes()
	for _, k := range []string{"delete persistentvolumes", "patch persistentvolumes"} {
		if n := after[k] - before[k]; n != 1 {
			t.Errorf("%d %q writes while deleting, want 1 (writes before %v, after %v)", n, k, before, after)
		}
	}
	if _, ok := e.drv.Volume(vol.ID); ok {
		t.Errorf("backend volume %s still exists after its PV was deleted", vol.ID)
	}
	dels := fakedriver.RequestsOf[*csi.DeleteVolumeRequest](e.drv)
	if len(dels) != 1 || dels[0].VolumeId != vol.ID || dels[0].Secrets["token"] != "t0ps3cret" {
		t.Errorf("DeleteVolume requests %d (first %v), want one for %s with the provisioner secret", len(dels), firstOf(dels), vol.ID)
	}
}

func firstOf[T any](s []*T) *T {
	if len(s) == 0 {
		return nil
	}
	return s[0]
}

// Retain: deleting the PVC leaves the Released PV and its backend volume, and
// the PV never carries the provisioner finalizer.
func TestRetainKeepsVolume(t *testing.T) {
	e := newEnv(t, fakedriver.Options{}, DefaultConfig())
	sc := e.storageClass("keep", withPolicy(v1.PersistentVolumeReclaimRetain))
	e.createPVC("keep", sc.Name, "1Gi")
	_, pv := e.waitBound("keep")
	if slices.Contains(pv.Finalizers, finalizerPV) {
		t.Errorf("Retain PV has finalizer %s: nothing would ever remove it", finalizerPV)
	}
	e.deletePVC("keep")
	e.eventually(30*time.Second, "PV to be Released", func() (bool, error) {
		p, err := e.kube.CoreV1().PersistentVolumes().Get(e.ctx, pv.Name, metav1.GetOptions{})
		return err == nil && p.Status.Phase == v1.VolumeReleased, err
	})
	time.Sleep(2 * time.Second) // give a wrong deletion time to happen
	if _, err := e.kube.CoreV1().PersistentVolumes().Get(e.ctx, pv.Name, metav1.GetOptions{}); err != nil {
		t.Errorf("Retain PV: %v", err)
	}
	if _, ok := e.drv.Volume(pv.Spec.CSI.VolumeHandle); !ok {
		t.Error("Retain: backend volume was deleted")
	}
	if n := e.drv.Calls("DeleteVolume"); n != 0 {
		t.Errorf("Retain: %d DeleteVolume calls, want 0", n)
	}
	_ = e.kube.CoreV1().PersistentVolumes().Delete(e.ctx, pv.Name, metav1.DeleteOptions{})
}
