package attacher

import (
	"context"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/equality"

	"github.com/csi-hub/csi-hub/internal/edit"
)

// Metadata and status writes follow internal/edit (strategic merge patches
// of single finalizers and annotations: no resourceVersion, no conflicts).

func (c *Controller) patchVAMeta(ctx context.Context, va *storagev1.VolumeAttachment, m edit.Meta) (*storagev1.VolumeAttachment, error) {
	out, err := edit.BuiltIn(ctx, c.d.Kube.StorageV1().VolumeAttachments(), va, m)
	if err == nil && out != va {
		c.stale.wrote(va.Name, va.ResourceVersion)
	}
	return out, err
}

func (c *Controller) patchPVMeta(ctx context.Context, pv *v1.PersistentVolume, m edit.Meta) (*v1.PersistentVolume, error) {
	out, err := edit.BuiltIn(ctx, c.d.Kube.CoreV1().PersistentVolumes(), pv, m)
	if err == nil && out != pv {
		c.pvStale.wrote(pv.Name, pv.ResourceVersion)
	}
	return out, err
}

// statusChanges is the status merge patch turning have into want, or nil when
// they are equal. attachmentMetadata is a map, which a merge patch would merge into the
// old one: keys that are gone are set to null explicitly.
func statusChanges(have, want storagev1.VolumeAttachmentStatus) map[string]any {
	if equality.Semantic.DeepEqual(have, want) {
		return nil
	}
	st := map[string]any{"attached": want.Attached}
	if !equality.Semantic.DeepEqual(have.AttachmentMetadata, want.AttachmentMetadata) {
		if len(want.AttachmentMetadata) == 0 {
			st["attachmentMetadata"] = nil
		} else {
			md := map[string]any{}
			for k := range have.AttachmentMetadata {
				md[k] = nil
			}
			for k, v := range want.AttachmentMetadata {
				md[k] = v
			}
			st["attachmentMetadata"] = md
		}
	}
	// A VolumeError is small and replaced whole; null clears it.
	st["attachError"] = want.AttachError
	st["detachError"] = want.DetachError
	return st
}

// writeStatus sets va's status to want through the status subresource, as
// upstream does; it writes nothing when the status is already want.
func (c *Controller) writeStatus(ctx context.Context, va *storagev1.VolumeAttachment, want storagev1.VolumeAttachmentStatus) (*storagev1.VolumeAttachment, error) {
	changes := statusChanges(va.Status, want)
	if changes == nil {
		return va, nil
	}
	out, err := edit.Status(ctx, c.d.Kube.StorageV1().VolumeAttachments(), va, changes)
	if err != nil {
		return va, err
	}
	c.stale.wrote(va.Name, va.ResourceVersion)
	return out, nil
}
