package attacher

import (
	"context"
	"encoding/json"
	"maps"
	"slices"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// metaEdit returns the metadata part of a strategic merge patch that makes obj
// as wanted, or nil when obj already is (so nothing is written).
//
// Strategic merge patches add or delete single finalizers (finalizers carry
// patchStrategy=merge), so no resourceVersion is needed and nobody else's
// finalizer can be lost to a stale copy, and no write ever conflicts.
type metaEdit func(obj metav1.Object) map[string]any

func addFinalizer(name string) metaEdit {
	return func(obj metav1.Object) map[string]any {
		if slices.Contains(obj.GetFinalizers(), name) {
			return nil
		}
		return map[string]any{"finalizers": []string{name}}
	}
}

func removeFinalizer(name string) metaEdit {
	return func(obj metav1.Object) map[string]any {
		if !slices.Contains(obj.GetFinalizers(), name) {
			return nil
		}
		return map[string]any{"$deleteFromPrimitiveList/finalizers": []string{name}}
	}
}

func setAnnotation(key, value string) metaEdit {
	return func(obj metav1.Object) map[string]any {
		if v, ok := obj.GetAnnotations()[key]; ok && v == value {
			return nil
		}
		return map[string]any{"annotations": map[string]string{key: value}}
	}
}

// both combines edits into one patch.
func both(edits ...metaEdit) metaEdit {
	return func(obj metav1.Object) map[string]any {
		var out map[string]any
		for _, e := range edits {
			if fields := e(obj); fields != nil {
				if out == nil {
					out = map[string]any{}
				}
				maps.Copy(out, fields)
			}
		}
		return out
	}
}

// metaPatch renders edit's patch for obj, or nil when there is nothing to do.
func metaPatch(obj metav1.Object, edit metaEdit) ([]byte, error) {
	fields := edit(obj)
	if fields == nil {
		return nil, nil
	}
	return json.Marshal(map[string]any{"metadata": fields})
}

func (c *Controller) patchVAMeta(ctx context.Context, va *storagev1.VolumeAttachment, edit metaEdit) (*storagev1.VolumeAttachment, error) {
	data, err := metaPatch(va, edit)
	if err != nil || data == nil {
		return va, err
	}
	out, err := c.h.Kube.StorageV1().VolumeAttachments().Patch(ctx, va.Name, types.StrategicMergePatchType, data, metav1.PatchOptions{})
	if err != nil {
		return va, err
	}
	c.stale.wrote(va.Name, va.ResourceVersion)
	return out, nil
}

func (c *Controller) patchPVMeta(ctx context.Context, pv *v1.PersistentVolume, edit metaEdit) (*v1.PersistentVolume, error) {
	data, err := metaPatch(pv, edit)
	if err != nil || data == nil {
		return pv, err
	}
	out, err := c.h.Kube.CoreV1().PersistentVolumes().Patch(ctx, pv.Name, types.StrategicMergePatchType, data, metav1.PatchOptions{})
	if err != nil {
		return pv, err
	}
	c.pvStale.wrote(pv.Name, pv.ResourceVersion)
	return out, nil
}

// statusPatch is the merge patch turning have into want, or nil when they are
// equal. attachmentMetadata is a map, which a merge patch would merge into the
// old one: keys that are gone are set to null explicitly.
func statusPatch(have, want storagev1.VolumeAttachmentStatus) ([]byte, error) {
	if equality.Semantic.DeepEqual(have, want) {
		return nil, nil
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
	return json.Marshal(map[string]any{"status": st})
}

// writeStatus sets va's status to want through the status subresource, as
// upstream does; it writes nothing when the status is already want.
func (c *Controller) writeStatus(ctx context.Context, va *storagev1.VolumeAttachment, want storagev1.VolumeAttachmentStatus) (*storagev1.VolumeAttachment, error) {
	data, err := statusPatch(va.Status, want)
	if err != nil || data == nil {
		return va, err
	}
	out, err := c.h.Kube.StorageV1().VolumeAttachments().Patch(ctx, va.Name, types.MergePatchType, data, metav1.PatchOptions{}, "status")
	if err != nil {
		return va, err
	}
	c.stale.wrote(va.Name, va.ResourceVersion)
	return out, nil
}
