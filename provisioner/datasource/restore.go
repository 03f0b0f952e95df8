package datasource

import (
	"context"
	"fmt"
	"strconv"

	"github.com/container-storage-interface/spec/lib/go/csi"
	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/csi-hub/csi-hub/internal/hub"
)

// restoreSource turns a dataSource of kind VolumeSnapshot into
// volume_content_source.snapshot, with external-provisioner's rules: the
// snapshot exists, is not being deleted, is bound to a content that points
// back at it, taken by the StorageClass's driver, readyToUse with a
// snapshotHandle; the claim asks for at least restoreSize; a volume mode
// change needs annotation snapshot.storage.kubernetes.io/allow-volume-mode-change
// "true" on the content. It reads the shared snapshot informers.
type restoreSource struct{ g *Guard }

func (s restoreSource) ContentSource(ctx context.Context, claim *v1.PersistentVolumeClaim, sc *storagev1.StorageClass) (*csi.VolumeContentSource, error) {
	g := s.g
	ns, err := sourceNamespace(claim)
	if err != nil {
		return nil, err
	}
	_, name, _ := Of(claim)
	if !g.snapshotsSynced.Load() {
		return nil, fmt.Errorf("the %s API is not served or not synced yet (are the snapshot CRDs installed?)", hub.SnapshotGroupVersion)
	}
	vs, err := g.snapshotLister.VolumeSnapshots(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("VolumeSnapshot %s/%s not found", ns, name)
	}
	if err != nil {
		return nil, err
	}
	// A snapshot being deleted still serves claims it is protected for: our
	// finalizer on it is the durable sign (it survives a restart of csi-hub,
	// or a switch from the sidecar, which does the same since v6.2).
	if vs.DeletionTimestamp != nil && !g.finishing(claim) && !hasFinalizer(vs.Finalizers, FinalizerSnapshotSource) {
		return nil, fmt.Errorf("VolumeSnapshot %s/%s is being deleted", ns, name)
	}
	if vs.Status == nil || vs.Status.BoundVolumeSnapshotContentName == nil {
		return nil, fmt.Errorf("VolumeSnapshot %s/%s is not bound to a VolumeSnapshotContent yet", ns, name)
	}
	contentName := *vs.Status.BoundVolumeSnapshotContentName
	content, err := g.contentLister.Get(contentName)
	if err != nil {
		return nil, fmt.Errorf("VolumeSnapshotContent %s of VolumeSnapshot %s/%s: %w", contentName, ns, name, err)
	}
	if ref := content.Spec.VolumeSnapshotRef; ref.UID != vs.UID || ref.Namespace != ns || ref.Name != name {
		return nil, fmt.Errorf("VolumeSnapshotContent %s is bound to VolumeSnapshot %s/%s, not to %s/%s", contentName, ref.Namespace, ref.Name, ns, name)
	}
	if content.Spec.Driver != sc.Provisioner {
		return nil, fmt.Errorf("VolumeSnapshot %s/%s was taken by driver %s, but StorageClass %q provisions with %s",
			ns, name, content.Spec.Driver, sc.Name, sc.Provisioner)
	}
	if !SnapshotReady(vs) {
		return nil, fmt.Errorf("VolumeSnapshot %s/%s is not ready to use yet", ns, name)
	}
	if content.Status == nil || content.Status.SnapshotHandle == nil {
		return nil, fmt.Errorf("VolumeSnapshotContent %s has no status.snapshotHandle", contentName)
	}
	if size := vs.Status.RestoreSize; size != nil {
		want := claim.Spec.Resources.Requests[v1.ResourceStorage]
		if want.Cmp(*size) < 0 {
			return nil, fmt.Errorf("spec.resources.requests.storage %s is smaller than the restoreSize %s of VolumeSnapshot %s/%s",
				want.String(), size.String(), ns, name)
		}
	}
	// --prevent-volume-mode-conversion=false allows every change, as the sidecar.
	if from := content.Spec.SourceVolumeMode; g.cfg.PreventVolumeModeConversion && from != nil && claim.Spec.VolumeMode != nil && *from != *claim.Spec.VolumeMode {
		// Changing the mode can expose what the source's filesystem had
		// freed, so only the content's owner may allow it.
		if ok, _ := strconv.ParseBool(content.Annotations[AnnAllowVolumeModeChange]); !ok {
			return nil, fmt.Errorf("spec.volumeMode %s differs from the snapshot's source volume (%s); annotate VolumeSnapshotContent %s with %s: \"true\" to allow the change",
				*claim.Spec.VolumeMode, *from, contentName, AnnAllowVolumeModeChange)
		}
	}
	if err := g.snapshotTarget(ns, name).set(ctx, vs, true); err != nil {
		return nil, err
	}
	return &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
		Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: *content.Status.SnapshotHandle}}}, nil
}
