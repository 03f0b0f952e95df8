package resizer

import (
	"context"
	"encoding/json"
	"fmt"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
)

// patchClaimStatus writes the difference between pvc and updated through the
// status subresource, as external-resizer does (a strategic merge patch, so
// fields and conditions written by others in between are kept). With
// checkVersion the patch carries pvc's resourceVersion and fails with a
// Conflict when pvc was stale: decisions made on an old object are not written.
func (c *Controller) patchClaimStatus(ctx context.Context, pvc, updated *v1.PersistentVolumeClaim, checkVersion bool) (*v1.PersistentVolumeClaim, error) {
	patch, err := twoWayPatch(pvc, updated, v1.PersistentVolumeClaim{})
	if err != nil {
		return pvc, err
	}
	if checkVersion {
		if patch, err = withResourceVersion(patch, pvc.ResourceVersion); err != nil {
			return pvc, err
		}
	}
	out, err := c.h.Kube.CoreV1().PersistentVolumeClaims(pvc.Namespace).Patch(ctx, pvc.Name,
		types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
	if err != nil {
		return pvc, fmt.Errorf("patching status of PVC %s/%s: %w", pvc.Namespace, pvc.Name, err)
	}
	return out, nil
}

// patchVolume writes the difference between pv and updated.
func (c *Controller) patchVolume(ctx context.Context, pv, updated *v1.PersistentVolume) (*v1.PersistentVolume, error) {
	patch, err := twoWayPatch(pv, updated, v1.PersistentVolume{})
	if err != nil {
		return pv, err
	}
	out, err := c.h.Kube.CoreV1().PersistentVolumes().Patch(ctx, pv.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
	if err != nil {
		return pv, fmt.Errorf("patching PV %s: %w", pv.Name, err)
	}
	return out, nil
}

func twoWayPatch(old, updated, schema any) ([]byte, error) {
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
	return patch, nil
}

func withResourceVersion(patch []byte, rv string) ([]byte, error) {
	var m map[string]any
	if err := json.Unmarshal(patch, &m); err != nil {
		return nil, err
	}
	meta, _ := m["metadata"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
		m["metadata"] = meta
	}
	meta["resourceVersion"] = rv
	return json.Marshal(m)
}
