package provisioner

import (
	"context"
	"fmt"

	"github.com/container-storage-interface/spec/lib/go/csi"
	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/csi-hub/csi-hub/provisioner/datasource"
)

// Data source kinds the provisioner itself handles (all others belong to
// volume populators and are left alone, as the sidecar does).
var (
	KindVolumeSnapshot = datasource.KindVolumeSnapshot
	KindPVC            = datasource.KindPVC
)

// DataSource (datasource.Source) turns a PVC's dataSource into CreateVolume's volume_content_source
// (restore from a VolumeSnapshot, clone of a PVC). New registers the built-in
// handlers (package datasource) for the kinds the
// driver supports; Controller.SetDataSource may replace them. Without a
// handler for a kind, PVCs with that kind of source get a ProvisioningFailed
// event and are retried, never provisioned empty. A handler also owns the protection of its
// sources (finalizers provisioner.storage.kubernetes.io/cloning-protection and
// .../volumesnapshot-as-source-protection) and their removal once no pending
// claim uses the source.
type DataSource = datasource.Source

// SetDataSource registers the handler for a data source kind; call before Run.
func (c *Controller) SetDataSource(kind schema.GroupKind, ds DataSource) {
	c.dataSources[kind] = ds
}

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

// claimsView is what the data source guard sees of the claims in flight.
type claimsView struct{ c *Controller }

func (v claimsView) IsPending(key string) bool { return v.c.inFlight.isPending(key) }
func (v claimsView) PendingClaims() []*v1.PersistentVolumeClaim {
	return v.c.inFlight.pendingClaims()
}
func (v claimsView) Retry(key string) { v.c.claims.Add(key) }
