package provisioner

import (
	"maps"

	"github.com/container-storage-interface/spec/lib/go/csi"
	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/csi-hub/csi-hub/provisioner/datasource"
)

// buildPV is the PV the sidecar would create for claim after CreateVolume
// returned vol with capacity bytes: kube-controller-manager binds it to the
// claim through claimRef, kubelet mounts it through spec.csi.
func (c *Controller) buildPV(claim *v1.PersistentVolumeClaim, sc *storagev1.StorageClass, p *plan, vol *csi.Volume, capacity int64) *v1.PersistentVolume {
	attrs := map[string]string{provisionerIDKey: c.identity}
	maps.Copy(attrs, vol.GetVolumeContext())

	src := p.source.DeepCopy()
	src.VolumeHandle = vol.GetVolumeId()
	src.VolumeAttributes = attrs
	if !isBlock(claim) {
		src.FSType = p.fsType
	}
	caps := p.req.GetVolumeCapabilities()
	if c.cfg.ControllerPublishReadOnly && len(caps) == 1 &&
		caps[0].GetAccessMode().GetMode() == csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY {
		src.ReadOnly = true
	}

	delName, delNS := "", ""
	if p.deletionSecret != nil {
		delName, delNS = p.deletionSecret.Name, p.deletionSecret.Namespace
	}
	pv := &v1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name: p.pvName,
			Annotations: map[string]string{
				annDynamicallyProvisioned: sc.Provisioner,
				// Always written (empty when there is none), so deletion never
				// has to consult a StorageClass that may have changed since.
				annDeletionSecretName:      delName,
				annDeletionSecretNamespace: delNS,
			},
		},
		Spec: v1.PersistentVolumeSpec{
			AccessModes:            claim.Spec.AccessModes,
			MountOptions:           sc.MountOptions,
			Capacity:               v1.ResourceList{v1.ResourceStorage: *resource.NewQuantity(capacity, resource.BinarySI)},
			PersistentVolumeSource: v1.PersistentVolumeSource{CSI: src},
			ClaimRef: &v1.ObjectReference{
				Kind:            "PersistentVolumeClaim",
				APIVersion:      "v1",
				Namespace:       claim.Namespace,
				Name:            claim.Name,
				UID:             claim.UID,
				ResourceVersion: claim.ResourceVersion,
			},
			StorageClassName: datasource.ClaimClass(claim),
			VolumeMode:       claim.Spec.VolumeMode,
		},
	}
	// A PVC may say "" (no class); a PV may not: the API server would refuse
	// the PV after the volume was created.
	if vac := claim.Spec.VolumeAttributesClassName; vac != nil && *vac != "" {
		pv.Spec.VolumeAttributesClassName = vac
	}
	if p.modifySecret != nil {
		pv.Annotations[annModifySecretName] = p.modifySecret.Name
		pv.Annotations[annModifySecretNamespace] = p.modifySecret.Namespace
	}
	if sc.ReclaimPolicy != nil {
		pv.Spec.PersistentVolumeReclaimPolicy = *sc.ReclaimPolicy
	}
	// The sidecar adds the finalizer to every PV and then patches it away
	// again for Retain/Recycle; adding it only where it belongs gives the same
	// objects with one write less.
	if pv.Spec.PersistentVolumeReclaimPolicy == v1.PersistentVolumeReclaimDelete {
		pv.Finalizers = []string{finalizerPV}
	}
	if c.topology {
		pv.Spec.NodeAffinity = nodeAffinity(vol.GetAccessibleTopology())
	}
	return pv
}
