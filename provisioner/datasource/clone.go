package datasource

import (
	"context"
	"fmt"

	"github.com/container-storage-interface/spec/lib/go/csi"
	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// cloneSource turns a dataSource of kind PersistentVolumeClaim into
// volume_content_source.volume, with external-provisioner's rules: the source
// is in the claim's namespace, Bound, not being deleted, its PV is a CSI
// volume of the StorageClass's driver bound to it, the clone asks for at
// least the source's requested size and keeps its volume mode. The
// StorageClass may differ (allowed since external-provisioner v3.2): the
// driver judges whether the two classes are compatible.
type cloneSource struct{ g *Guard }

func (s cloneSource) ContentSource(ctx context.Context, claim *v1.PersistentVolumeClaim, sc *storagev1.StorageClass) (*csi.VolumeContentSource, error) {
	ns, err := sourceNamespace(claim)
	if err != nil {
		return nil, err
	}
	_, name, _ := Of(claim)
	src, err := s.g.pvcs.PersistentVolumeClaims(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("source PVC %s/%s not found", ns, name)
	}
	if err != nil {
		return nil, err
	}
	if src.DeletionTimestamp != nil && !s.g.finishing(claim) {
		return nil, fmt.Errorf("source PVC %s/%s is being deleted", ns, name)
	}
	if src.Status.Phase != v1.ClaimBound || src.Spec.VolumeName == "" {
		return nil, fmt.Errorf("source PVC %s/%s must be Bound to be cloned, its phase is %q", ns, name, src.Status.Phase)
	}
	if ClaimClass(src) == "" {
		return nil, fmt.Errorf("source PVC %s/%s has no storageClassName", ns, name)
	}
	want, have := claim.Spec.Resources.Requests[v1.ResourceStorage], src.Spec.Resources.Requests[v1.ResourceStorage]
	if want.Cmp(have) < 0 {
		return nil, fmt.Errorf("spec.resources.requests.storage %s is smaller than the source PVC %s/%s (%s): a clone must be at least as large as its source",
			want.String(), ns, name, have.String())
	}
	pv, err := s.g.pvs.Get(src.Spec.VolumeName)
	if err != nil {
		return nil, fmt.Errorf("PersistentVolume %s of source PVC %s/%s: %w", src.Spec.VolumeName, ns, name, err)
	}
	switch {
	case pv.Spec.CSI == nil:
		return nil, fmt.Errorf("source PVC %s/%s is bound to %s, which is not a CSI volume", ns, name, pv.Name)
	case pv.Spec.CSI.Driver != sc.Provisioner:
		return nil, fmt.Errorf("source PVC %s/%s is a volume of driver %s, but StorageClass %q provisions with %s: clones are made by the source's own driver",
			ns, name, pv.Spec.CSI.Driver, sc.Name, sc.Provisioner)
	case pv.Spec.ClaimRef == nil || pv.Spec.ClaimRef.UID != src.UID || pv.Spec.ClaimRef.Namespace != ns || pv.Spec.ClaimRef.Name != name:
		return nil, fmt.Errorf("PersistentVolume %s is not bound to source PVC %s/%s", pv.Name, ns, name)
	case pv.Status.Phase != v1.VolumeBound:
		return nil, fmt.Errorf("PersistentVolume %s of source PVC %s/%s is %s, not Bound", pv.Name, ns, name, pv.Status.Phase)
	}
	if from, to := modeOf(pv.Spec.VolumeMode), modeOf(claim.Spec.VolumeMode); from != to {
		return nil, fmt.Errorf("spec.volumeMode %s differs from the source PVC %s/%s (%s): a clone keeps the volume mode of its source", to, ns, name, from)
	}
	if err := s.g.claimTarget(ns, name).set(ctx, src, true); err != nil {
		return nil, err
	}
	return &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{
		Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: pv.Spec.CSI.VolumeHandle}}}, nil
}

// modeOf: an unset volume mode means Filesystem.
func modeOf(m *v1.PersistentVolumeMode) v1.PersistentVolumeMode {
	if m == nil {
		return v1.PersistentVolumeFilesystem
	}
	return *m
}
