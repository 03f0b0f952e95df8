package resizer

import (
	"context"
	"fmt"

	v1 "k8s.io/api/core/v1"

	"github.com/csi-hub/csi-hub/internal/edit"
)

// patchClaimStatus writes the difference between pvc and updated through the
// status subresource, as external-resizer does (edit.Diff: fields and
// conditions written by others in between are kept). With checkVersion a
// decision made on a stale pvc fails with a Conflict instead of being written.
func (c *Controller) patchClaimStatus(ctx context.Context, pvc, updated *v1.PersistentVolumeClaim, checkVersion bool) (*v1.PersistentVolumeClaim, error) {
	out, err := edit.Diff(ctx, c.d.Kube.CoreV1().PersistentVolumeClaims(pvc.Namespace), pvc, updated, v1.PersistentVolumeClaim{}, checkVersion, "status")
	if err != nil {
		return pvc, fmt.Errorf("patching status of PVC %s/%s: %w", pvc.Namespace, pvc.Name, err)
	}
	return out, nil
}

// patchVolume writes the difference between pv and updated.
func (c *Controller) patchVolume(ctx context.Context, pv, updated *v1.PersistentVolume) (*v1.PersistentVolume, error) {
	out, err := edit.Diff(ctx, c.d.Kube.CoreV1().PersistentVolumes(), pv, updated, v1.PersistentVolume{}, false)
	if err != nil {
		return pv, fmt.Errorf("patching PV %s: %w", pv.Name, err)
	}
	return out, nil
}
