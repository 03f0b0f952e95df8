package provisioner

import (
	"context"
	"fmt"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/internal/csiconn"
	"github.com/csi-hub/csi-hub/internal/migration"
)

// In-tree volume migration, as external-provisioner with csi-translation-lib.
// When the driver's name is one csi-translation-lib knows (ebs.csi.aws.com,
// ...), c.migrateFrom is its in-tree plugin (kubernetes.io/aws-ebs, ...) and:
//
//   - claims of a StorageClass with that provisioner are provisioned once
//     kube-controller-manager hands them over (it sets the storage-provisioner
//     annotation to the driver name and pv.kubernetes.io/migrated-to);
//   - CreateVolume gets the class translated to CSI (fsType ->
//     csi.storage.k8s.io/fstype, zone/zones -> allowedTopologies, ...);
//   - the PV is written back in the in-tree format (spec.awsElasticBlockStore,
//     ...) with pv.kubernetes.io/provisioned-by naming the in-tree plugin, so
//     kube-controller-manager and a rollback see the PV the in-tree plugin
//     would have made; kube-controller-manager adds migrated-to itself;
//   - such PVs (in-tree source, provisioned-by the plugin or migrated-to the
//     driver) are deleted through DeleteVolume with the translated handle;
//   - CreateVolume and DeleteVolume are recorded in
//     csi_sidecar_operations_seconds with migrated="true" for such volumes
//     and "false" for the others (markMigrated), as the sidecar's.

// markMigrated labels the CSI calls made with the returned context as the
// sidecar's markAsMigrated does.
func markMigrated(ctx context.Context, migrated bool) context.Context {
	return csiconn.MarkMigrated(ctx, migrated)
}

// knownProvisioner is the library's knownProvisioner: the driver, or the
// in-tree plugin it replaces.
func (c *Controller) knownProvisioner(name string) bool {
	return name == c.d.Driver || (c.migrateFrom != "" && name == c.migrateFrom)
}

// migrateClass translates sc when it is a class of the in-tree plugin this
// driver replaces; any other class is returned as it is.
func (c *Controller) migrateClass(ctx context.Context, sc *storagev1.StorageClass) (*storagev1.StorageClass, bool, error) {
	if c.migrateFrom == "" || sc.Provisioner != c.migrateFrom {
		return sc, false, nil
	}
	klog.FromContext(ctx).V(2).Info("Translating StorageClass of the in-tree plugin to CSI", "storageClass", sc.Name, "plugin", sc.Provisioner)
	out, err := migration.StorageClassToCSI(ctx, c.migrateFrom, sc)
	if err != nil {
		return sc, true, err
	}
	return out, true, nil
}

// inTreePV turns the CSI PV built for a migrated claim into the in-tree PV
// external-provisioner writes. If that fails, the new volume is deleted
// again (upstream does the same); the error says whether that worked.
func (c *Controller) inTreePV(ctx context.Context, key string, pv *v1.PersistentVolume, secrets map[string]string) (*v1.PersistentVolume, error) {
	out, err := migration.PVToInTree(pv)
	if err == nil {
		return out, nil
	}
	handle := pv.Spec.CSI.VolumeHandle
	if cerr := c.cleanup(ctx, handle, secrets); cerr != nil {
		return nil, fmt.Errorf("%w; deleting the created volume %s failed, will retry: %v", err, handle, cerr)
	}
	c.inFlight.donePending(key)
	klog.FromContext(ctx).Info("Deleted the volume whose PV could not be translated to the in-tree format", "PV", pv.Name, "handle", handle, "err", err)
	return nil, fmt.Errorf("%w (the created volume %s was deleted again)", err, handle)
}

// csiVolume returns the PV as the driver sees it: pv itself when it has a
// CSI source, its translation when it has an in-tree source of a migrated
// plugin, nil when it has neither.
func (c *Controller) csiVolume(ctx context.Context, pv *v1.PersistentVolume) (*v1.PersistentVolume, error) {
	if pv.Spec.CSI != nil {
		return pv, nil
	}
	if !migration.IsInTree(pv) {
		if pv.Annotations[annMigratedTo] == c.d.Driver || (c.migrateFrom != "" && pv.Annotations[annDynamicallyProvisioned] == c.migrateFrom) {
			return nil, fmt.Errorf("PersistentVolume %s is marked as migrated to %s but has no in-tree volume source csi-translation-lib can translate", pv.Name, c.d.Driver)
		}
		return nil, nil
	}
	// Like upstream, any translatable in-tree PV this provisioner owns is
	// deleted; the driver check only guards against a PV of another plugin
	// that merely carries our provisioned-by annotation.
	return migration.PVToCSI(ctx, pv, c.d.Driver)
}
