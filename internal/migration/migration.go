// Package migration is csi-hub's glue to k8s.io/csi-translation-lib, shared
// by the provisioner and the attacher. It does what external-provisioner and
// external-attacher do for in-tree volumes that kube-controller-manager hands
// to a CSI driver (CSI migration):
//
//   - a driver whose name csi-translation-lib knows (ebs.csi.aws.com,
//     pd.csi.storage.gke.io, disk.csi.azure.com, file.csi.azure.com,
//     cinder.csi.openstack.org, csi.vsphere.vmware.com, pxd.portworx.com)
//     supports migration from its in-tree plugin (kubernetes.io/aws-ebs, ...):
//     chosen automatically from the driver name, with no flag, as upstream;
//   - the provisioner translates the in-tree StorageClass to CSI parameters and
//     topology before CreateVolume, writes the PV back in the in-tree format
//     (spec.awsElasticBlockStore, ...), and translates an in-tree PV to CSI
//     to find the volume handle for DeleteVolume;
//   - the attacher translates an in-tree PV of a VolumeAttachment to CSI to
//     find the handle, capability and attributes for ControllerPublishVolume.
//
// Every translation works on a copy; the caller's objects are never changed.
package migration

import (
	"context"
	"fmt"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	csitrans "k8s.io/csi-translation-lib"
	"k8s.io/klog/v2"
)

// AnnMigratedTo is set by kube-controller-manager on PVCs and PVs of an
// in-tree plugin whose volumes a CSI driver now serves; its value is the
// driver name.
const AnnMigratedTo = "pv.kubernetes.io/migrated-to"

var translator = csitrans.New()

// InTreePlugin returns the in-tree plugin that driver replaces
// ("kubernetes.io/aws-ebs" for "ebs.csi.aws.com"), or "" when
// csi-translation-lib knows no in-tree plugin for it.
func InTreePlugin(driver string) string {
	if !translator.IsMigratedCSIDriverByName(driver) {
		return ""
	}
	name, err := translator.GetInTreeNameFromCSIName(driver)
	if err != nil {
		return ""
	}
	return name
}

// IsInTree reports whether pv has an in-tree source csi-translation-lib can
// translate (awsElasticBlockStore, gcePersistentDisk, azureDisk, ...).
func IsInTree(pv *v1.PersistentVolume) bool {
	return pv != nil && pv.Spec.CSI == nil && translator.IsPVMigratable(pv)
}

// StorageClassToCSI translates the parameters and allowedTopologies of an
// in-tree StorageClass of plugin into those its CSI driver understands
// (e.g. fsType -> csi.storage.k8s.io/fstype, zone -> allowedTopologies on
// topology.ebs.csi.aws.com/zone). sc is not changed.
func StorageClassToCSI(ctx context.Context, plugin string, sc *storagev1.StorageClass) (*storagev1.StorageClass, error) {
	out, err := translator.TranslateInTreeStorageClassToCSI(klog.FromContext(ctx), plugin, sc)
	if err != nil {
		return nil, fmt.Errorf("translating StorageClass %q of in-tree plugin %s to CSI: %w", sc.Name, plugin, err)
	}
	return out, nil
}

// PVToCSI translates an in-tree PV into the CSI PV the driver sees. It fails
// for a PV that has no in-tree source csi-translation-lib knows or whose
// source it cannot translate (e.g. a malformed volume ID), and for one that
// belongs to another driver than driver (when driver is not empty).
func PVToCSI(ctx context.Context, pv *v1.PersistentVolume, driver string) (*v1.PersistentVolume, error) {
	if !IsInTree(pv) {
		return nil, fmt.Errorf("PersistentVolume %q has no in-tree volume source that csi-translation-lib can translate", pv.Name)
	}
	out, err := translator.TranslateInTreePVToCSI(klog.FromContext(ctx), pv)
	if err != nil {
		plugin, _ := translator.GetInTreePluginNameFromSpec(pv, nil)
		return nil, fmt.Errorf("translating in-tree PersistentVolume %q (%s) to CSI: %w", pv.Name, plugin, err)
	}
	if out.Spec.CSI == nil {
		return nil, fmt.Errorf("translating in-tree PersistentVolume %q to CSI gave no CSI source", pv.Name)
	}
	if driver != "" && out.Spec.CSI.Driver != driver {
		return nil, fmt.Errorf("in-tree PersistentVolume %q migrates to CSI driver %s, not %s", pv.Name, out.Spec.CSI.Driver, driver)
	}
	return out, nil
}

// PVToInTree translates a PV with spec.csi of a migrated driver back to the
// in-tree source, as external-provisioner writes PVs of in-tree
// StorageClasses. pv is not changed.
func PVToInTree(pv *v1.PersistentVolume) (*v1.PersistentVolume, error) {
	out, err := translator.TranslateCSIPVToInTree(pv)
	if err != nil {
		return nil, fmt.Errorf("translating PersistentVolume %q back to its in-tree source: %w", pv.Name, err)
	}
	return out, nil
}

// InlineToCSI translates an in-tree inline volume of a Pod in namespace to
// the PV spec kube-controller-manager puts in a VolumeAttachment's
// spec.source.inlineVolumeSpec.
func InlineToCSI(ctx context.Context, vol *v1.Volume, namespace string) (*v1.PersistentVolume, error) {
	if !translator.IsInlineMigratable(vol) {
		return nil, fmt.Errorf("inline volume %q has no in-tree source that csi-translation-lib can translate", vol.Name)
	}
	return translator.TranslateInTreeInlineVolumeToCSI(klog.FromContext(ctx), vol, namespace)
}

// RepairVolumeHandle completes the handle of a migrated volume with what
// only the node ID knows (GCE PD: the project and zone left UNSPECIFIED by
// the translation), so it can be compared with the driver's ListVolumes.
func RepairVolumeHandle(driver, handle, nodeID string) (string, error) {
	return translator.RepairVolumeHandle(driver, handle, nodeID)
}
