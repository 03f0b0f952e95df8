package snapshotter

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	snaplisters "github.com/kubernetes-csi/external-snapshotter/client/v8/listers/volumesnapshot/v1"
	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/csi-hub/csi-hub/internal/hub"
)

const (
	// SnapshotAsSourceFinalizer is set by the snapshot-controller on a
	// VolumeSnapshot while a PVC is being restored from it.
	SnapshotAsSourceFinalizer = "snapshot.storage.kubernetes.io/volumesnapshot-as-source-protection"
	// AnnAllowVolumeModeChange on a VolumeSnapshotContent lets a restore use
	// another volume mode (Block/Filesystem) than the snapshot's source.
	AnnAllowVolumeModeChange = "snapshot.storage.kubernetes.io/allow-volume-mode-change"
)

// RestoreSource resolves a PVC's VolumeSnapshot data source into CreateVolume's
// volume_content_source, with the checks external-provisioner makes (bound,
// ready, same driver, size, volume mode). It satisfies provisioner.DataSource:
// register it with provisioner's Controller.SetDataSource for the kind
// snapshot.storage.k8s.io/VolumeSnapshot. It reads the shared snapshot
// informers, so restores cost no API requests.
type RestoreSource struct {
	api       *hub.SnapshotAPI
	snapshots snaplisters.VolumeSnapshotLister
	contents  snaplisters.VolumeSnapshotContentLister
}

// NewRestoreSource builds a RestoreSource on the hub's snapshot API; call it
// before the hub runs, so its informers start with the others. The snapshot
// CRDs are detected by the snapshotter's Run (or any WaitReady caller);
// until they are served, restores fail with a message saying so.
func NewRestoreSource(h *hub.Hub) (*RestoreSource, error) {
	api, err := h.Snapshots()
	if err != nil {
		return nil, err
	}
	return newRestoreSource(api), nil
}

func newRestoreSource(api *hub.SnapshotAPI) *RestoreSource {
	return &RestoreSource{
		api:       api,
		snapshots: api.Informers.Snapshot().V1().VolumeSnapshots().Lister(),
		contents:  api.Informers.Snapshot().V1().VolumeSnapshotContents().Lister(),
	}
}

// ContentSource implements provisioner.DataSource.
func (r *RestoreSource) ContentSource(ctx context.Context, claim *v1.PersistentVolumeClaim, sc *storagev1.StorageClass) (*csi.VolumeContentSource, error) {
	ns, name, err := snapshotRef(claim)
	if err != nil {
		return nil, err
	}
	if !r.api.Ready() {
		return nil, fmt.Errorf("the %s API (snapshot CRDs) is not served in this cluster; cannot restore from VolumeSnapshot %s/%s", hub.SnapshotGroupVersion, ns, name)
	}
	// Ready: this returns at once, starting informers obtained late.
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := r.api.WaitReady(wctx); err != nil {
		return nil, err
	}
	vs, err := r.snapshots.VolumeSnapshots(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("VolumeSnapshot %s/%s not found", ns, name)
	}
	if err != nil {
		return nil, err
	}
	if vs.DeletionTimestamp != nil && !slices.Contains(vs.Finalizers, SnapshotAsSourceFinalizer) {
		return nil, fmt.Errorf("VolumeSnapshot %s/%s is being deleted", ns, name)
	}
	if vs.Status == nil || vs.Status.BoundVolumeSnapshotContentName == nil {
		return nil, fmt.Errorf("VolumeSnapshot %s/%s is not bound to a VolumeSnapshotContent yet", ns, name)
	}
	contentName := *vs.Status.BoundVolumeSnapshotContentName
	content, err := r.contents.Get(contentName)
	if err != nil {
		return nil, fmt.Errorf("VolumeSnapshotContent %s of VolumeSnapshot %s/%s: %w", contentName, ns, name, err)
	}
	if ref := content.Spec.VolumeSnapshotRef; ref.UID != vs.UID || ref.Namespace != vs.Namespace || ref.Name != vs.Name {
		return nil, fmt.Errorf("VolumeSnapshotContent %s is bound to another VolumeSnapshot (%s/%s), not %s/%s", contentName, ref.Namespace, ref.Name, ns, name)
	}
	if content.Spec.Driver != sc.Provisioner {
		return nil, fmt.Errorf("VolumeSnapshot %s/%s belongs to driver %s, not to StorageClass %s's provisioner %s", ns, name, content.Spec.Driver, sc.Name, sc.Provisioner)
	}
	if vs.Status.ReadyToUse == nil || !*vs.Status.ReadyToUse {
		return nil, fmt.Errorf("VolumeSnapshot %s/%s is not ready to use yet", ns, name)
	}
	if content.Status == nil || content.Status.SnapshotHandle == nil {
		return nil, fmt.Errorf("VolumeSnapshotContent %s has no status.snapshotHandle", contentName)
	}
	if err := checkRestoreSize(claim, vs.Status.RestoreSize); err != nil {
		return nil, fmt.Errorf("VolumeSnapshot %s/%s: %w", ns, name, err)
	}
	if err := checkVolumeMode(claim, content.Spec.SourceVolumeMode, content.Annotations[AnnAllowVolumeModeChange], contentName); err != nil {
		return nil, err
	}
	return &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
		Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: *content.Status.SnapshotHandle}}}, nil
}

// snapshotRef is the VolumeSnapshot a claim restores from (dataSourceRef
// wins over dataSource); only the claim's own namespace is supported.
func snapshotRef(claim *v1.PersistentVolumeClaim) (ns, name string, err error) {
	ns = claim.Namespace
	switch {
	case claim.Spec.DataSourceRef != nil:
		ref := claim.Spec.DataSourceRef
		if ref.Namespace != nil && *ref.Namespace != "" && *ref.Namespace != ns {
			return "", "", fmt.Errorf("spec.dataSourceRef.namespace %q: restoring from another namespace is not supported", *ref.Namespace)
		}
		name = ref.Name
	case claim.Spec.DataSource != nil:
		name = claim.Spec.DataSource.Name
	}
	if name == "" {
		return "", "", fmt.Errorf("PVC %s/%s names no VolumeSnapshot in spec.dataSource/spec.dataSourceRef", ns, claim.Name)
	}
	return ns, name, nil
}

// checkRestoreSize: a restored volume cannot be smaller than the snapshot.
func checkRestoreSize(claim *v1.PersistentVolumeClaim, restoreSize *resource.Quantity) error {
	if restoreSize == nil {
		return nil
	}
	req, ok := claim.Spec.Resources.Requests[v1.ResourceStorage]
	if !ok {
		return fmt.Errorf("PVC %s/%s has no spec.resources.requests.storage", claim.Namespace, claim.Name)
	}
	if req.Value() < restoreSize.Value() {
		return fmt.Errorf("spec.resources.requests.storage %d of PVC %s/%s is less than the snapshot's restoreSize %d",
			req.Value(), claim.Namespace, claim.Name, restoreSize.Value())
	}
	return nil
}

// checkVolumeMode refuses to turn a Filesystem snapshot into a Block volume
// (or back) unless the content allows it: the conversion can expose data
// the source volume's filesystem had freed.
func checkVolumeMode(claim *v1.PersistentVolumeClaim, source *v1.PersistentVolumeMode, allow, contentName string) error {
	if source == nil {
		return nil
	}
	want := v1.PersistentVolumeFilesystem
	if claim.Spec.VolumeMode != nil {
		want = *claim.Spec.VolumeMode
	}
	if want == *source {
		return nil
	}
	if ok, err := strconv.ParseBool(allow); err == nil && ok {
		return nil
	}
	return fmt.Errorf("PVC %s/%s asks for volumeMode %s but the snapshot is of a %s volume; set annotation %s=true on VolumeSnapshotContent %s to allow the change",
		claim.Namespace, claim.Name, want, *source, AnnAllowVolumeModeChange, contentName)
}
