package resizer

import (
	"context"
	"fmt"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The PVC status writes of the expansion protocol. Each is one PATCH of the
// status subresource.

// markInProgress records that the controller is expanding to size
// (allocatedResources, Resizing condition). With newAttempt the status becomes
// ControllerResizeInProgress and earlier resize conditions (errors) are
// dropped; a retry of the same size keeps them. The version check makes sure
// the decision was taken on the PVC as it is now.
func (e *expander) markInProgress(ctx context.Context, pvc *v1.PersistentVolumeClaim, size resource.Quantity, newAttempt bool) (*v1.PersistentVolumeClaim, error) {
	updated := pvc.DeepCopy()
	updated.Status.Conditions = mergeConditions(updated.Status.Conditions, resizeConditions, !newAttempt,
		v1.PersistentVolumeClaimCondition{Type: v1.PersistentVolumeClaimResizing, Status: v1.ConditionTrue, LastTransitionTime: metav1.Now()})
	delete(updated.Annotations, annNodeExpansionNotRequired)
	if newAttempt {
		setResizeStatus(updated, v1.PersistentVolumeClaimControllerResizeInProgress)
	}
	if updated.Status.AllocatedResources == nil {
		updated.Status.AllocatedResources = v1.ResourceList{}
	}
	updated.Status.AllocatedResources[v1.ResourceStorage] = size
	return e.c.patchClaimStatus(ctx, pvc, updated, true)
}

// markFailed records a final error: ControllerResizeError condition, and with
// infeasible also the ControllerResizeInfeasible status, which lets the user
// lower the request. It is written even over a slightly stale PVC (no
// version check): losing it would hide the failure.
func (e *expander) markFailed(ctx context.Context, pvc *v1.PersistentVolumeClaim, callErr error, infeasible bool) (*v1.PersistentVolumeClaim, error) {
	updated := pvc.DeepCopy()
	if infeasible {
		setResizeStatus(updated, v1.PersistentVolumeClaimControllerResizeInfeasible)
	}
	updated.Status.Conditions = mergeConditions(updated.Status.Conditions, resizeConditions, true,
		v1.PersistentVolumeClaimCondition{
			Type: v1.PersistentVolumeClaimControllerResizeError, Status: v1.ConditionTrue, LastTransitionTime: metav1.Now(),
			Message: fmt.Sprintf("failed to expand pvc with %v", callErr),
		})
	return e.c.patchClaimStatus(ctx, pvc, updated, false)
}

// markNodePending hands the expansion over to kubelet: FileSystemResizePending
// and NodeResizePending. status.capacity stays until kubelet has grown the
// filesystem.
func (e *expander) markNodePending(ctx context.Context, pvc *v1.PersistentVolumeClaim) (*v1.PersistentVolumeClaim, error) {
	updated := pvc.DeepCopy()
	updated.Status.Conditions = mergeConditions(updated.Status.Conditions, resizeConditions, true,
		v1.PersistentVolumeClaimCondition{
			Type: v1.PersistentVolumeClaimFileSystemResizePending, Status: v1.ConditionTrue, LastTransitionTime: metav1.Now(),
			Message: "Waiting for user to (re-)start a pod to finish file system resize of volume on node.",
		})
	delete(updated.Annotations, annNodeExpansionNotRequired)
	setResizeStatus(updated, v1.PersistentVolumeClaimNodeResizePending)
	out, err := e.c.patchClaimStatus(ctx, pvc, updated, true)
	if err != nil {
		return out, fmt.Errorf("marking PVC %s/%s as waiting for node expansion: %w", pvc.Namespace, pvc.Name, err)
	}
	return out, nil
}

// markFinished completes a controller-only expansion: status.capacity, no
// resize conditions or resize status, and the annotation telling kubelet not
// to call NodeExpandVolume.
func (e *expander) markFinished(ctx context.Context, pvc *v1.PersistentVolumeClaim, size resource.Quantity) (*v1.PersistentVolumeClaim, error) {
	updated := pvc.DeepCopy()
	if updated.Status.Capacity == nil {
		updated.Status.Capacity = v1.ResourceList{}
	}
	updated.Status.Capacity[v1.ResourceStorage] = size
	updated.Status.Conditions = mergeConditions(updated.Status.Conditions, resizeConditions, false)
	delete(updated.Status.AllocatedResourceStatuses, v1.ResourceStorage)
	if len(updated.Status.AllocatedResourceStatuses) == 0 {
		updated.Status.AllocatedResourceStatuses = nil
	}
	metav1.SetMetaDataAnnotation(&updated.ObjectMeta, annNodeExpansionNotRequired, "true")
	out, err := e.c.patchClaimStatus(ctx, pvc, updated, true)
	if err != nil {
		return out, fmt.Errorf("marking PVC %s/%s as resized: %w", pvc.Namespace, pvc.Name, err)
	}
	return out, nil
}

func setResizeStatus(pvc *v1.PersistentVolumeClaim, s v1.ClaimResourceStatus) {
	if pvc.Status.AllocatedResourceStatuses == nil {
		pvc.Status.AllocatedResourceStatuses = map[v1.ResourceName]v1.ClaimResourceStatus{}
	}
	pvc.Status.AllocatedResourceStatuses[v1.ResourceStorage] = s
}
