package attacher

import (
	"context"
	"encoding/json"
	"maps"
	"slices"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
)

// metaEdit returns the metadata fields to merge-patch into obj, or nil when
// obj already is as wanted (so nothing is written).
type metaEdit func(obj metav1.Object) map[string]any

func addFinalizer(name string) metaEdit {
	return func(obj metav1.Object) map[string]any {
		if slices.Contains(obj.GetFinalizers(), name) {
			return nil
		}
		return map[string]any{"finalizers": append(slices.Clone(obj.GetFinalizers()), name)}
	}
}

func removeFinalizer(name string) metaEdit {
	return func(obj metav1.Object) map[string]any {
		if !slices.Contains(obj.GetFinalizers(), name) {
			return nil
		}
		rest := slices.DeleteFunc(slices.Clone(obj.GetFinalizers()), func(f string) bool { return f == name })
		if len(rest) == 0 {
			return map[string]any{"finalizers": nil} // null removes the field
		}
		return map[string]any{"finalizers": rest}
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

// patchMeta applies edit to cur with a merge patch guarded by cur's
// resourceVersion: finalizer lists are replaced whole, so a stale copy must
// never overwrite another controller's finalizer. On a conflict (our informer
// copy was stale) it reads the object afresh and tries again.
func patchMeta[T metav1.Object](ctx context.Context, cur T, edit metaEdit,
	get func(ctx context.Context, name string, opts metav1.GetOptions) (T, error),
	patch func(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, sub ...string) (T, error),
) (T, bool, error) {
	obj, wrote := cur, false
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		fields := edit(obj)
		if fields == nil {
			return nil
		}
		fields["resourceVersion"] = obj.GetResourceVersion()
		data, err := json.Marshal(map[string]any{"metadata": fields})
		if err != nil {
			return err
		}
		out, err := patch(ctx, obj.GetName(), types.MergePatchType, data, metav1.PatchOptions{})
		if apierrors.IsConflict(err) {
			fresh, gerr := get(ctx, obj.GetName(), metav1.GetOptions{})
			if gerr != nil {
				return gerr
			}
			obj = fresh
			return err
		}
		if err != nil {
			return err
		}
		obj, wrote = out, true
		return nil
	})
	return obj, wrote, err
}

func (c *Controller) patchVAMeta(ctx context.Context, va *storagev1.VolumeAttachment, edit metaEdit) (*storagev1.VolumeAttachment, error) {
	vas := c.h.Kube.StorageV1().VolumeAttachments()
	out, wrote, err := patchMeta(ctx, va, edit, vas.Get, vas.Patch)
	if wrote {
		c.stale.wrote(va.Name, va.ResourceVersion)
	}
	return out, err
}

func (c *Controller) patchPVMeta(ctx context.Context, pv *v1.PersistentVolume, edit metaEdit) (*v1.PersistentVolume, error) {
	pvs := c.h.Kube.CoreV1().PersistentVolumes()
	out, _, err := patchMeta(ctx, pv, edit, pvs.Get, pvs.Patch)
	return out, err
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
