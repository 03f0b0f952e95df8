package resizer

import (
	"context"
	"fmt"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// markStatus records a modification to class target that has not completed:
// status.modifyVolumeStatus and the ModifyingVolume (no error) or
// ModifyVolumeError condition. Pending (class missing) leaves the conditions.
func (m *modifier) markStatus(ctx context.Context, pvc *v1.PersistentVolumeClaim, s v1.PersistentVolumeClaimModifyVolumeStatus, target string, callErr error) (*v1.PersistentVolumeClaim, error) {
	updated := pvc.DeepCopy()
	updated.Status.ModifyVolumeStatus = &v1.ModifyVolumeStatus{Status: s, TargetVolumeAttributesClassName: target}
	cond := v1.PersistentVolumeClaimCondition{Status: v1.ConditionTrue, LastTransitionTime: metav1.Now()}
	switch {
	case s == v1.PersistentVolumeClaimModifyVolumePending:
	case callErr == nil:
		cond.Type, cond.Message = v1.PersistentVolumeClaimVolumeModifyingVolume, "ModifyVolume operation in progress."
	default:
		cond.Type = v1.PersistentVolumeClaimVolumeModifyVolumeError
		cond.Message = "ModifyVolume failed with error: " + callErr.Error() + ". Waiting for retry."
	}
	if cond.Type != "" {
		updated.Status.Conditions = mergeConditions(updated.Status.Conditions, modifyConditions, false, cond)
	}
	return m.c.patchClaimStatus(ctx, pvc, updated, callErr == nil)
}

// markCompleted records a successful modification: the PV first (so a PVC
// never claims a class its PV does not have), then the PVC's current class,
// with modifyVolumeStatus and the modify conditions cleared.
func (m *modifier) markCompleted(ctx context.Context, pvc *v1.PersistentVolumeClaim, pv *v1.PersistentVolume, class string) (*v1.PersistentVolumeClaim, *v1.PersistentVolume, error) {
	newPV := pv.DeepCopy()
	newPV.Spec.VolumeAttributesClassName = &class
	pv, err := m.c.patchVolume(ctx, pv, newPV)
	if err != nil {
		return pvc, pv, fmt.Errorf("setting spec.volumeAttributesClassName of PV %s to %s: %w", pv.Name, class, err)
	}
	updated := pvc.DeepCopy()
	updated.Status.ModifyVolumeStatus = nil
	updated.Status.CurrentVolumeAttributesClassName = &class
	updated.Status.Conditions = mergeConditions(updated.Status.Conditions, modifyConditions, false)
	pvc, err = m.c.patchClaimStatus(ctx, pvc, updated, false)
	if err != nil {
		return pvc, pv, fmt.Errorf("recording class %s on PVC %s/%s: %w", class, pvc.Namespace, pvc.Name, err)
	}
	return pvc, pv, nil
}

// rolledBack handles a PVC whose class request was removed while no
// modification can be running: the modify conditions are cleared so none is
// left stuck. modifyVolumeStatus stays: it is the record of the last attempt.
func (m *modifier) rolledBack(ctx context.Context, pvc *v1.PersistentVolumeClaim) error {
	if !hasCondition(pvc, v1.PersistentVolumeClaimVolumeModifyingVolume) && !hasCondition(pvc, v1.PersistentVolumeClaimVolumeModifyVolumeError) {
		return nil
	}
	m.c.d.Steps.Trigger(ctx, "PVC no longer asks for a class: clear the modification conditions")
	updated := pvc.DeepCopy()
	updated.Status.Conditions = mergeConditions(updated.Status.Conditions, modifyConditions, false)
	out, err := m.c.patchClaimStatus(ctx, pvc, updated, true)
	if err != nil {
		return m.c.writeFailed(pvc, reasonModifyFailed, err)
	}
	m.c.events().Event(out, v1.EventTypeNormal, reasonModifyCancelled, "Cancelled modify.")
	return nil
}
