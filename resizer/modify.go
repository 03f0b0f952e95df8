package resizer

import (
	"context"
	"fmt"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/internal/hub"
)

// modifier is the modification sub-controller (external-resizer's
// pkg/modifycontroller).
type modifier struct {
	c *Controller
	q hub.Queue
	// slow holds PVCs whose class the driver refused (Infeasible).
	slow *slowRetry
	// uncertain holds PVCs whose last ControllerModifyVolume may still be
	// running in the driver; their target must not change until it ends.
	uncertain sync.Map
}

func newModifier(c *Controller) *modifier {
	// external-resizer's queue name, for the workqueue_* metrics.
	return &modifier{c: c, q: c.d.NewQueue(c.d.Driver + "-pvc"), slow: newSlowRetry(c.d.RetryMax)}
}

func (m *modifier) run(ctx context.Context) {
	// After a restart every InProgress modification is treated as possibly
	// still running in the driver.
	if pvcs, err := m.c.pvcs.List(labels.Everything()); err == nil {
		for _, pvc := range pvcs {
			if s := pvc.Status.ModifyVolumeStatus; s != nil && s.Status == v1.PersistentVolumeClaimModifyVolumeInProgress {
				if key, err := cache.MetaNamespaceKeyFunc(pvc); err == nil {
					m.uncertain.Store(key, true)
				}
			}
		}
	}
	go m.slow.run(ctx)
	hub.RunWorkers(ctx, Name, "PersistentVolumeClaim", m.q, m.c.d.Workers, m.sync)
}

func (m *modifier) forget(key string) {
	m.q.Forget(key)
	m.slow.clear(key)
	m.uncertain.Delete(key)
}

// classAdded wakes PVCs that wait (Pending) for this class to exist; the
// sidecar only notices them at its next restart.
func (m *modifier) classAdded(obj any) {
	vac, ok := obj.(*storagev1.VolumeAttributesClass)
	if !ok {
		return
	}
	pvcs, err := m.c.pvcs.List(labels.Everything())
	if err != nil {
		return
	}
	for _, pvc := range pvcs {
		if deref(pvc.Spec.VolumeAttributesClassName) == vac.Name {
			if key, err := cache.MetaNamespaceKeyFunc(pvc); err == nil {
				m.q.Add(key)
			}
		}
	}
}

func (m *modifier) sync(ctx context.Context, key string) error {
	pvc, pv, err := m.c.claimAndVolume(ctx, key)
	if err != nil || pvc == nil {
		return err
	}
	want := deref(pvc.Spec.VolumeAttributesClassName)
	current := deref(pvc.Status.CurrentVolumeAttributesClassName)
	st := pvc.Status.ModifyVolumeStatus
	if st == nil && want == current {
		return nil // nothing asked, or already there
	}
	if err := m.delayIfInfeasible(key, pvc); err != nil {
		return err
	}
	inProgress := st != nil && st.Status == v1.PersistentVolumeClaimModifyVolumeInProgress
	if want == "" && !inProgress {
		// The user took the class request back: nothing to do in the driver.
		return m.rolledBack(ctx, pvc)
	}
	_, uncertain := m.uncertain.Load(key)
	if inProgress && (uncertain || want == "") {
		// The driver may still be applying the previous target: finish that
		// before following a changed spec.
		vac, err := m.class(ctx, pvc, st.TargetVolumeAttributesClassName)
		if err != nil {
			return err
		}
		m.c.d.Steps.Trigger(ctx, fmt.Sprintf("a modification to class %s may still be running in the driver: retry it", vac.Name))
		return m.modifyTo(ctx, key, pvc, pv, vac)
	}
	vac, err := m.class(ctx, pvc, want)
	if err != nil {
		if _, merr := m.markStatus(ctx, pvc, v1.PersistentVolumeClaimModifyVolumePending, want, nil); merr != nil {
			return m.c.writeFailed(pvc, reasonModifyFailed, merr)
		}
		if apierrors.IsNotFound(err) {
			return nil // classAdded wakes the PVC up
		}
		return err
	}
	if want == current {
		m.c.d.Steps.Trigger(ctx, fmt.Sprintf("PVC was set back to its current class %s: re-apply it to clear the failed modification", want))
	} else {
		m.c.d.Steps.Trigger(ctx, fmt.Sprintf("PVC asks for class %s but volume has %q: modify volume %s", want, current, pv.Name))
	}
	marked, err := m.markStatus(ctx, pvc, v1.PersistentVolumeClaimModifyVolumeInProgress, vac.Name, nil)
	if err != nil {
		return m.c.writeFailed(pvc, reasonModifyFailed, err)
	}
	pvc = marked
	m.c.events().Event(pvc, v1.EventTypeNormal, reasonModify,
		fmt.Sprintf("external resizer is modifying volume %s with vac %s", pvc.Name, vac.Name))
	return m.modifyTo(ctx, key, pvc, pv, vac)
}

// class reads a VolumeAttributesClass from the cache; a missing one gets a
// Warning event on the PVC.
func (m *modifier) class(ctx context.Context, pvc *v1.PersistentVolumeClaim, name string) (*storagev1.VolumeAttributesClass, error) {
	vac, err := m.c.vacs.Get(name)
	if err != nil {
		if apierrors.IsNotFound(err) {
			m.c.events().Eventf(pvc, v1.EventTypeWarning, reasonModifyFailed, "VAC %q does not exist.", name)
		}
		return nil, fmt.Errorf("VolumeAttributesClass %q: %w", name, err)
	}
	if vac.DriverName != m.c.d.Driver {
		klog.FromContext(ctx).V(2).Info("VolumeAttributesClass names another driver", "class", name, "classDriver", vac.DriverName, "driver", m.c.d.Driver)
	}
	return vac, nil
}

// modifyTo calls ControllerModifyVolume with vac's parameters and records the
// outcome.
func (m *modifier) modifyTo(ctx context.Context, key string, pvc *v1.PersistentVolumeClaim, pv *v1.PersistentVolume, vac *storagev1.VolumeAttributesClass) error {
	callErr := m.c.modifyVolume(ctx, pvc, pv, vac.Parameters)
	if callErr == nil {
		m.uncertain.Delete(key)
		m.slow.clear(key)
		if _, _, err := m.markCompleted(ctx, pvc, pv, vac.Name); err != nil {
			return m.c.writeFailed(pvc, reasonModifyFailed, err)
		}
		m.c.events().Event(pvc, v1.EventTypeNormal, reasonModifySuccessful,
			fmt.Sprintf("external resizer modified volume %s with vac %s successfully", pvc.Name, vac.Name))
		if want := deref(pvc.Spec.VolumeAttributesClassName); want != "" && want != vac.Name {
			// An uncertain earlier target was finished first; the spec asks
			// for another class, and our status write will not wake the PVC.
			m.q.Add(key)
		}
		return nil
	}
	msg := callErr.Error()
	outcome := v1.PersistentVolumeClaimModifyVolumeInProgress
	if !isFinalError(callErr) {
		m.uncertain.Store(key, true)
		msg += ". Still modifying to VAC " + vac.Name
	} else {
		// Only InvalidArgument means the class itself is refused; other final
		// errors are retried with backoff, still InProgress.
		if status.Code(callErr) == codes.InvalidArgument {
			outcome = v1.PersistentVolumeClaimModifyVolumeInfeasible
			m.slow.refused(key)
		}
		m.uncertain.Delete(key)
	}
	klog.FromContext(ctx).Error(callErr, "ControllerModifyVolume failed", "PVC", key, "PV", pv.Name, "class", vac.Name, "status", outcome)
	updated, merr := m.markStatus(ctx, pvc, outcome, vac.Name, callErr)
	if merr == nil {
		pvc = updated
	}
	m.c.events().Event(pvc, v1.EventTypeWarning, reasonModifyFailed, msg)
	if merr != nil {
		return fmt.Errorf("%w; and recording it on the PVC failed: %v", callErr, merr)
	}
	if outcome == v1.PersistentVolumeClaimModifyVolumeInfeasible {
		// Retrying soon cannot help: wait for the user to pick another class
		// (which enqueues the PVC at once) or for the slow retry.
		wait, _ := m.slow.wait(key)
		return hub.RequeueAfter(wait)
	}
	return callErr
}

// delayIfInfeasible postpones a retry of the class the driver refused.
func (m *modifier) delayIfInfeasible(key string, pvc *v1.PersistentVolumeClaim) error {
	s := pvc.Status.ModifyVolumeStatus
	if s == nil || s.TargetVolumeAttributesClassName != deref(pvc.Spec.VolumeAttributesClassName) {
		m.slow.clear(key) // another class may well be feasible
		return nil
	}
	if s.Status == v1.PersistentVolumeClaimModifyVolumeInfeasible {
		m.slow.adopt(key)
	}
	if wait, ok := m.slow.wait(key); ok {
		return hub.RequeueAfter(wait)
	}
	return nil
}
