// Package edit is the one way csi-hub's controllers change the objects they
// read from the shared informers: finalizers, annotations and status.
//
// The rule for a stale informer cache: no edit depends on the cached copy
// being current, and an edit that finds nothing to change writes nothing.
//   - Metadata of built-in kinds (PV, PVC, VolumeAttachment): one strategic
//     merge patch that adds or deletes single finalizers
//     ($deleteFromPrimitiveList) and sets or nulls single annotations. It
//     carries no resourceVersion, so it never conflicts and never drops
//     another writer's finalizer.
//   - Metadata of custom resources (snapshot objects take no strategic
//     merge): a JSON merge patch of the new finalizer list carrying the
//     resourceVersion it was computed from; on a Conflict the object is read
//     again and the edit recomputed, so a finalizer added meanwhile survives.
//   - A removal that must not undo someone else's newer choice (the
//     scheduler's selected-node) is a JSON patch that tests the value first
//     (RemoveAnnotationIf).
//   - Status: a merge patch of just the fields that change, through the
//     status subresource (Status), or, where a controller computes a whole
//     new status of a built-in kind, the two-way strategic merge diff
//     (StrategicDiff), which keeps list entries others wrote in between.
package edit

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/client-go/util/retry"
)

// Patcher is the Patch method of every typed client.
type Patcher[T any] interface {
	Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (T, error)
}

// Client is what a metadata edit of a custom resource needs: it re-reads the
// object after a conflict.
type Client[T any] interface {
	Patcher[T]
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
}

// Meta is a change to an object's finalizers and annotations.
type Meta struct {
	addFinalizers    []string
	removeFinalizers []string
	annotations      map[string]*string // nil value: remove
}

func AddFinalizer(f string) Meta    { return Meta{addFinalizers: []string{f}} }
func RemoveFinalizer(f string) Meta { return Meta{removeFinalizers: []string{f}} }
func SetAnnotation(key, value string) Meta {
	return Meta{annotations: map[string]*string{key: &value}}
}
func RemoveAnnotation(key string) Meta { return Meta{annotations: map[string]*string{key: nil}} }

// And combines two changes into one write.
func (m Meta) And(o Meta) Meta {
	out := Meta{
		addFinalizers:    append(slices.Clone(m.addFinalizers), o.addFinalizers...),
		removeFinalizers: append(slices.Clone(m.removeFinalizers), o.removeFinalizers...),
		annotations:      maps.Clone(m.annotations),
	}
	if len(o.annotations) > 0 && out.annotations == nil {
		out.annotations = map[string]*string{}
	}
	maps.Copy(out.annotations, o.annotations)
	return out
}

// pending drops what obj already is.
func (m Meta) pending(obj metav1.Object) Meta {
	has := obj.GetFinalizers()
	var out Meta
	for _, f := range m.addFinalizers {
		if !slices.Contains(has, f) {
			out.addFinalizers = append(out.addFinalizers, f)
		}
	}
	for _, f := range m.removeFinalizers {
		if slices.Contains(has, f) {
			out.removeFinalizers = append(out.removeFinalizers, f)
		}
	}
	for k, v := range m.annotations {
		cur, ok := obj.GetAnnotations()[k]
		if (v == nil && ok) || (v != nil && (!ok || cur != *v)) {
			if out.annotations == nil {
				out.annotations = map[string]*string{}
			}
			out.annotations[k] = v
		}
	}
	return out
}

func (m Meta) empty() bool {
	return len(m.addFinalizers) == 0 && len(m.removeFinalizers) == 0 && len(m.annotations) == 0
}

func (m Meta) annotationPatch() map[string]any {
	out := map[string]any{}
	for k, v := range m.annotations {
		if v == nil {
			out[k] = nil
		} else {
			out[k] = *v
		}
	}
	return out
}

// StrategicPatch renders the edit of obj for a built-in kind, or nil when obj
// already is as wanted.
func (m Meta) StrategicPatch(obj metav1.Object) []byte {
	p := m.pending(obj)
	if p.empty() {
		return nil
	}
	md := map[string]any{}
	if len(p.addFinalizers) > 0 {
		md["finalizers"] = p.addFinalizers
	}
	if len(p.removeFinalizers) > 0 {
		md["$deleteFromPrimitiveList/finalizers"] = p.removeFinalizers
	}
	if len(p.annotations) > 0 {
		md["annotations"] = p.annotationPatch()
	}
	data, _ := json.Marshal(map[string]any{"metadata": md})
	return data
}

// MergePatch renders the edit of obj for a custom resource (whole finalizer
// list, obj's resourceVersion), or nil when obj already is as wanted.
func (m Meta) MergePatch(obj metav1.Object) []byte {
	p := m.pending(obj)
	if p.empty() {
		return nil
	}
	md := map[string]any{"resourceVersion": obj.GetResourceVersion()}
	if len(p.addFinalizers) > 0 || len(p.removeFinalizers) > 0 {
		list := slices.DeleteFunc(slices.Clone(obj.GetFinalizers()), func(f string) bool {
			return slices.Contains(p.removeFinalizers, f)
		})
		list = append(list, p.addFinalizers...)
		if list == nil {
			list = []string{} // null would mean "no change" to nothing; [] clears
		}
		md["finalizers"] = list
	}
	if len(p.annotations) > 0 {
		md["annotations"] = p.annotationPatch()
	}
	data, _ := json.Marshal(map[string]any{"metadata": md})
	return data
}

// BuiltIn applies m to obj, a built-in kind, in one strategic merge patch and
// returns the object as written (obj itself when nothing was to do).
func BuiltIn[T metav1.Object](ctx context.Context, c Patcher[T], obj T, m Meta) (T, error) {
	data := m.StrategicPatch(obj)
	if data == nil {
		return obj, nil
	}
	out, err := c.Patch(ctx, obj.GetName(), types.StrategicMergePatchType, data, metav1.PatchOptions{})
	if err != nil {
		return obj, err
	}
	return out, nil
}

// Custom applies m to obj, a custom resource; on a Conflict it reads the
// object again and retries with the fresh copy.
func Custom[T metav1.Object](ctx context.Context, c Client[T], obj T, m Meta) (T, error) {
	cur := obj
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		data := m.MergePatch(cur)
		if data == nil {
			return nil
		}
		out, err := c.Patch(ctx, cur.GetName(), types.MergePatchType, data, metav1.PatchOptions{})
		if apierrors.IsConflict(err) {
			fresh, gerr := c.Get(ctx, cur.GetName(), metav1.GetOptions{})
			if gerr != nil {
				return gerr
			}
			cur = fresh
			return err
		}
		if err == nil {
			cur = out
		}
		return err
	})
	return cur, err
}

// RemoveAnnotationIf removes annotation key only while it still has value (a
// JSON patch test + remove): NotFound and a failed test (someone set another
// value meanwhile) leave the object alone and are reported as such.
func RemoveAnnotationIf[T metav1.Object](ctx context.Context, c Patcher[T], obj T, key, value string) error {
	path := "/metadata/annotations/" + strings.NewReplacer("~", "~0", "/", "~1").Replace(key)
	data, _ := json.Marshal([]map[string]any{
		{"op": "test", "path": path, "value": value},
		{"op": "remove", "path": path},
	})
	_, err := c.Patch(ctx, obj.GetName(), types.JSONPatchType, data, metav1.PatchOptions{})
	return err
}

// Status merge-patches changes into obj's status through the status
// subresource; nil values clear fields. No changes, no write.
func Status[T metav1.Object](ctx context.Context, c Patcher[T], obj T, changes map[string]any) (T, error) {
	if len(changes) == 0 {
		return obj, nil
	}
	data, err := json.Marshal(map[string]any{"status": changes})
	if err != nil {
		return obj, err
	}
	out, err := c.Patch(ctx, obj.GetName(), types.MergePatchType, data, metav1.PatchOptions{}, "status")
	if err != nil {
		return obj, err
	}
	return out, nil
}

// StrategicDiff is the two-way strategic merge patch turning old into
// updated (built-in kinds; schema is a zero value of the type), nil when they
// are equal. With checkVersion it carries old's resourceVersion, so a
// decision made on a stale copy fails with a Conflict instead of being
// written.
func StrategicDiff(old, updated metav1.Object, schema any, checkVersion bool) ([]byte, error) {
	oldJSON, err := json.Marshal(old)
	if err != nil {
		return nil, err
	}
	newJSON, err := json.Marshal(updated)
	if err != nil {
		return nil, err
	}
	patch, err := strategicpatch.CreateTwoWayMergePatch(oldJSON, newJSON, schema)
	if err != nil {
		return nil, fmt.Errorf("building patch: %w", err)
	}
	if string(patch) == "{}" {
		return nil, nil
	}
	if !checkVersion {
		return patch, nil
	}
	var m map[string]any
	if err := json.Unmarshal(patch, &m); err != nil {
		return nil, err
	}
	md, _ := m["metadata"].(map[string]any)
	if md == nil {
		md = map[string]any{}
		m["metadata"] = md
	}
	md["resourceVersion"] = old.GetResourceVersion()
	return json.Marshal(m)
}

// Diff writes the StrategicDiff of old -> updated (to subresources, e.g.
// "status"); an empty diff writes nothing.
func Diff[T metav1.Object](ctx context.Context, c Patcher[T], old, updated T, schema any, checkVersion bool, subresources ...string) (T, error) {
	data, err := StrategicDiff(old, updated, schema, checkVersion)
	if err != nil || data == nil {
		return old, err
	}
	out, err := c.Patch(ctx, old.GetName(), types.StrategicMergePatchType, data, metav1.PatchOptions{}, subresources...)
	if err != nil {
		return old, err
	}
	return out, nil
}

// VolumeError is the error status value of VolumeAttachment-like and
// snapshot objects: a time and a message.
func VolumeError(now metav1.Time, message string) map[string]any {
	return map[string]any{"time": now, "message": message}
}
