// Package datasource is the provisioner's job for claims with a data source
// it handles itself (clone of a PVC, restore of a VolumeSnapshot): checking
// the source, the content source for CreateVolume, and the source's
// protection finalizers. Data sources of other kinds belong to volume
// populators and are left alone, as the sidecar does.
package datasource

import (
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Data source kinds the provisioner itself handles.
var (
	KindVolumeSnapshot = schema.GroupKind{Group: "snapshot.storage.k8s.io", Kind: "VolumeSnapshot"}
	KindPVC            = schema.GroupKind{Group: "", Kind: "PersistentVolumeClaim"}
)

// Of returns the PVC's data source kind and name (dataSourceRef wins over
// dataSource, as in the API's own defaulting), or ok=false.
func Of(claim *v1.PersistentVolumeClaim) (kind schema.GroupKind, name string, ok bool) {
	ref := claim.Spec.DataSourceRef
	if ref != nil {
		group := ""
		if ref.APIGroup != nil {
			group = *ref.APIGroup
		}
		return schema.GroupKind{Group: group, Kind: ref.Kind}, ref.Name, true
	}
	if ds := claim.Spec.DataSource; ds != nil {
		group := ""
		if ds.APIGroup != nil {
			group = *ds.APIGroup
		}
		return schema.GroupKind{Group: group, Kind: ds.Kind}, ds.Name, true
	}
	return schema.GroupKind{}, "", false
}

// Handled reports whether the provisioner (not a populator) owns kind.
func Handled(kind schema.GroupKind) bool { return kind == KindVolumeSnapshot || kind == KindPVC }

// ClaimClass is the PVC's StorageClass name: the beta annotation, else
// spec.storageClassName (as component-helpers' GetPersistentVolumeClaimClass,
// which the sidecar uses).
func ClaimClass(claim *v1.PersistentVolumeClaim) string {
	if c, ok := claim.Annotations[v1.BetaStorageClassAnnotation]; ok {
		return c
	}
	if claim.Spec.StorageClassName != nil {
		return *claim.Spec.StorageClassName
	}
	return ""
}
