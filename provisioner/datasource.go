package provisioner

import (
	"context"
	"fmt"

	"github.com/container-storage-interface/spec/lib/go/csi"
	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Data source kinds the provisioner itself handles (all others belong to
// volume populators and are left alone, as the sidecar does).
var (
	KindVolumeSnapshot = schema.GroupKind{Group: "snapshot.storage.k8s.io", Kind: "VolumeSnapshot"}
	KindPVC            = schema.GroupKind{Group: "", Kind: "PersistentVolumeClaim"}
)

// DataSource turns a PVC's dataSource into CreateVolume's volume_content_source
// (restore from a VolumeSnapshot, clone of a PVC). New registers the built-in
// handlers (datasource_clone.go, datasource_restore.go) for the kinds the
// driver supports; Controller.SetDataSource may replace them. Without a
// handler for a kind, PVCs with that kind of source get a ProvisioningFailed
// event and are retried, never provisioned empty. A handler also owns the protection of its
// sources (finalizers provisioner.storage.kubernetes.io/cloning-protection and
// .../volumesnapshot-as-source-protection) and their removal once no pending
// claim uses the source.
type DataSource interface {
	// ContentSource validates the source (bound, ready, same driver, size...)
	// and returns what CreateVolume needs. An error is reported on the PVC and
	// the PVC is retried with backoff.
	ContentSource(ctx context.Context, claim *v1.PersistentVolumeClaim, sc *storagev1.StorageClass) (*csi.VolumeContentSource, error)
}

// SetDataSource registers the handler for a data source kind; call before Run.
func (c *Controller) SetDataSource(kind schema.GroupKind, ds DataSource) {
	c.dataSources[kind] = ds
}

// claimDataSource returns the PVC's data source kind and name (dataSourceRef
// wins over dataSource, as in the API's own defaulting), or ok=false.
func claimDataSource(claim *v1.PersistentVolumeClaim) (kind schema.GroupKind, name string, ok bool) {
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

// handledKind reports whether the provisioner (not a populator) owns kind.
func handledKind(kind schema.GroupKind) bool { return kind == KindVolumeSnapshot || kind == KindPVC }

// contentSource resolves a handled data source or explains why it cannot.
func (c *Controller) contentSource(ctx context.Context, claim *v1.PersistentVolumeClaim, sc *storagev1.StorageClass, kind schema.GroupKind, name string) (*csi.VolumeContentSource, error) {
	if name == "" {
		return nil, fmt.Errorf("PVC data source of kind %s has no name", kind.Kind)
	}
	ds := c.dataSources[kind]
	if ds == nil {
		return nil, fmt.Errorf("provisioning from a %s data source (%q) is not supported by this csi-hub yet; the PVC stays pending and is retried", kind.Kind, name)
	}
	src, err := ds.ContentSource(ctx, claim, sc)
	if err != nil {
		return nil, fmt.Errorf("data source %s %q: %w", kind.Kind, name, err)
	}
	if src == nil {
		return nil, fmt.Errorf("data source %s %q: handler returned no content source", kind.Kind, name)
	}
	return src, nil
}
