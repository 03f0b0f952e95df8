package resizer

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/internal/hub"
)

// expander is the expansion sub-controller (external-resizer's
// pkg/controller with RecoverVolumeExpansionFailure, GA since Kubernetes 1.34).
type expander struct {
	c        *Controller
	q        hub.Queue
	nodeOnly bool
	// slow holds PVCs whose last expansion was infeasible.
	slow *slowRetry
	// users is nil without --handle-volume-inuse-error.
	users *claimUsers

	mu sync.Mutex
	// finalErr holds PVCs whose last ControllerExpandVolume failed with a
	// final error, so no operation can still be running in the driver and
	// the user's new (lower) request may be tried instead of the old one.
	finalErr map[string]bool
}

func newExpander(c *Controller, nodeOnly bool) *expander {
	return &expander{c: c, q: c.d.NewQueue(c.d.Driver + "-pvc"), nodeOnly: nodeOnly,
		slow: newSlowRetry(c.d.RetryMax), finalErr: map[string]bool{}}
}

func (e *expander) run(ctx context.Context) {
	go e.slow.run(ctx)
	hub.RunWorkers(ctx, Name, "PersistentVolumeClaim", e.q, e.c.d.Workers, e.sync)
}

func (e *expander) forget(key string) {
	e.q.Forget(key)
	e.slow.clear(key)
	e.setFinalError(key, false)
	if e.users != nil {
		e.users.clear(key)
	}
}

func (e *expander) setFinalError(key string, final bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if final {
		e.finalErr[key] = true
	} else {
		delete(e.finalErr, key)
	}
}

func (e *expander) hasFinalError(key string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.finalErr[key]
}

func (e *expander) sync(ctx context.Context, key string) error {
	c := e.c
	pvc, pv, err := c.claimAndVolume(ctx, key)
	if err != nil || pvc == nil {
		return err
	}
	if c.cfg.AnnotateFsResize && metav1.HasAnnotation(pv.ObjectMeta, annPreResizeCapacity) && nodeExpansionDone(pvc, pv) {
		updated := pv.DeepCopy()
		delete(updated.Annotations, annPreResizeCapacity)
		if pv, err = c.patchVolume(ctx, pv, updated); err != nil {
			return err
		}
	}
	request := pvc.Spec.Resources.Requests[v1.ResourceStorage]
	capacity := pvc.Status.Capacity[v1.ResourceStorage]
	if request.Cmp(capacity) <= 0 {
		return nil
	}
	size, act := e.targetSize(key, pvc, pv)
	if !act {
		return nil
	}
	return e.expand(ctx, key, pvc, pv, size)
}

// nodeExpansionDone: kubelet has reported the PV's size in the PVC.
func nodeExpansionDone(pvc *v1.PersistentVolumeClaim, pv *v1.PersistentVolume) bool {
	pvcCap, pvCap := pvc.Status.Capacity[v1.ResourceStorage], pv.Spec.Capacity[v1.ResourceStorage]
	return pvcCap.Cmp(pvCap) >= 0
}

// targetSize decides the size to expand to, given that the request exceeds
// status.capacity. It is the sidecar's recovery logic: an expansion that may
// still be running in the driver (uncertain error) or on the node is
// finished at its recorded size (status.allocatedResources) before a newer
// request is followed; after a final or infeasible error, the user's current
// request, possibly lowered, is followed.
func (e *expander) targetSize(key string, pvc *v1.PersistentVolumeClaim, pv *v1.PersistentVolume) (resource.Quantity, bool) {
	request := pvc.Spec.Resources.Requests[v1.ResourceStorage]
	pvSize := pv.Spec.Capacity[v1.ResourceStorage]
	state := pvc.Status.AllocatedResourceStatuses[v1.ResourceStorage]
	allocated, hasAllocated := pvc.Status.AllocatedResources[v1.ResourceStorage]
	orAllocated := func(def resource.Quantity) resource.Quantity {
		if hasAllocated {
			return allocated
		}
		return def
	}
	if pvSize.Cmp(request) < 0 {
		switch state {
		case v1.PersistentVolumeClaimNodeResizeInfeasible:
			return orAllocated(request), true
		case v1.PersistentVolumeClaimNodeResizePending, v1.PersistentVolumeClaimNodeResizeInProgress:
			size := orAllocated(request)
			// The node still has to finish the previous expansion.
			return size, pvSize.Cmp(size) < 0
		case v1.PersistentVolumeClaimControllerResizeInProgress:
			if e.hasFinalError(key) {
				return request, true
			}
			return orAllocated(request), true
		default: // no expansion yet, or ControllerResizeInfeasible: follow the request
			return request, true
		}
	}
	// The PV is already big enough for the request.
	switch state {
	case v1.PersistentVolumeClaimNodeResizePending, v1.PersistentVolumeClaimNodeResizeInProgress:
		return resource.Quantity{}, false // kubelet's turn
	case v1.PersistentVolumeClaimNodeResizeInfeasible:
		if e.nodeOnly {
			return request, true
		}
		return orAllocated(request), true
	case v1.PersistentVolumeClaimControllerResizeInProgress, v1.PersistentVolumeClaimControllerResizeInfeasible:
		// The driver expanded but the API objects were not all written, or the
		// user lowered the request below what was already allocated.
		return orAllocated(request), true
	default:
		if state == "" && hasAllocated {
			return allocated, true
		}
		if hasCondition(pvc, v1.PersistentVolumeClaimFileSystemResizePending) {
			return resource.Quantity{}, false
		}
		return request, true
	}
}

// expand marks the PVC, calls the driver and records the outcome.
func (e *expander) expand(ctx context.Context, key string, pvc *v1.PersistentVolumeClaim, pv *v1.PersistentVolume, size resource.Quantity) error {
	c := e.c
	allocated, hasAllocated := pvc.Status.AllocatedResources[v1.ResourceStorage]
	state := pvc.Status.AllocatedResourceStatuses[v1.ResourceStorage]
	// After an infeasible answer the very same size is tried again only
	// slowly; a changed request goes ahead at once.
	if state == v1.PersistentVolumeClaimControllerResizeInfeasible {
		e.slow.adopt(key)
	}
	sameSize := hasAllocated && allocated.Cmp(size) == 0
	if wait, ok := e.slow.wait(key); ok && sameSize {
		klog.FromContext(ctx).V(4).Info("Expansion to this size was infeasible; retrying later", "PVC", key, "size", size.String(), "after", wait)
		return hub.RequeueAfter(wait)
	}
	current := pvc.Status.Capacity[v1.ResourceStorage]
	c.d.Steps.Trigger(ctx, fmt.Sprintf("PVC asks for %s but has %s: expand volume %s to %s",
		pvc.Spec.Resources.Requests.Storage(), current.String(), pv.Name, size.String()))

	marked, err := e.markInProgress(ctx, pvc, size, !sameSize)
	if err != nil {
		return c.writeFailed(pvc, reasonResizeFailed, fmt.Errorf("marking PVC %s as resizing: %w", key, err))
	}
	pvc = marked
	if e.users != nil && e.users.blocked(pvc) {
		// Upstream's message and reason; retried with backoff, and at once
		// when the last Pod using the claim goes.
		msg := fmt.Sprintf("Unable to expand %s because CSI driver %s only supports offline expansion and volume is currently in-use",
			klog.KObj(pvc), c.d.Driver)
		c.events().Event(pvc, v1.EventTypeWarning, reasonResizeFailed, msg)
		return errors.New(msg)
	}
	c.events().Event(pvc, v1.EventTypeNormal, reasonResizing, fmt.Sprintf("External resizer is resizing volume %s", pv.Name))

	if e.users != nil {
		e.users.clear(key) // set again if the driver still finds it in use
	}
	newSize, nodeNeeded, err := c.expandVolume(ctx, pv, size)
	if err != nil {
		if e.users != nil && status.Code(err) == codes.FailedPrecondition {
			e.users.setInUseError(pvc)
		}
		return e.failed(ctx, key, pvc, pv, err)
	}
	e.setFinalError(key, false)
	e.slow.clear(key)

	if err := e.finish(ctx, pvc, pv, current, newSize, nodeNeeded); err != nil {
		return c.writeFailed(pvc, reasonResizeFailed, err)
	}
	return nil
}

// failed records a failed ControllerExpandVolume on the PVC.
func (e *expander) failed(ctx context.Context, key string, pvc *v1.PersistentVolumeClaim, pv *v1.PersistentVolume, callErr error) error {
	c := e.c
	err := fmt.Errorf("resize volume %q by resizer %q failed: %w", pv.Name, c.d.Driver, callErr)
	final, infeasible := isFinalError(callErr), isInfeasibleError(callErr)
	e.setFinalError(key, final)
	if infeasible {
		e.slow.refused(key)
	} else {
		e.slow.clear(key)
	}
	recorded := true
	if final {
		// No operation can be running in the driver: show the error on the
		// PVC (and, when infeasible, let the user lower the request). An
		// uncertain error keeps ControllerResizeInProgress: the same size is
		// retried with backoff.
		if _, merr := e.markFailed(ctx, pvc, callErr, infeasible); merr != nil {
			recorded = false
			err = fmt.Errorf("%w; and recording it on the PVC failed: %v", err, merr)
		}
	}
	klog.FromContext(ctx).Error(callErr, "ControllerExpandVolume failed", "PVC", key, "PV", pv.Name, "final", final, "infeasible", infeasible)
	c.events().Event(pvc, v1.EventTypeWarning, reasonResizeFailed, err.Error())
	if infeasible && recorded {
		// Nothing changes by retrying soon: wait for the user (a spec change
		// enqueues the PVC at once) or for the slow retry.
		wait, _ := e.slow.wait(key)
		return hub.RequeueAfter(wait)
	}
	return err
}

// finish writes the PV's new size, then either hands over to kubelet or
// completes the expansion on the PVC.
func (e *expander) finish(ctx context.Context, pvc *v1.PersistentVolumeClaim, pv *v1.PersistentVolume,
	oldCapacity, newSize resource.Quantity, nodeNeeded bool) error {
	c := e.c
	updated := pv.DeepCopy()
	updated.Spec.Capacity[v1.ResourceStorage] = newSize
	if c.cfg.AnnotateFsResize && nodeNeeded && !metav1.HasAnnotation(pv.ObjectMeta, annPreResizeCapacity) {
		metav1.SetMetaDataAnnotation(&updated.ObjectMeta, annPreResizeCapacity, oldCapacity.String())
	}
	if _, err := c.patchVolume(ctx, pv, updated); err != nil {
		return fmt.Errorf("updating capacity of PV %s to %s: %w", pv.Name, newSize.String(), err)
	}
	if nodeNeeded {
		if _, err := e.markNodePending(ctx, pvc); err != nil {
			return err
		}
		c.events().Event(pvc, v1.EventTypeNormal, reasonFileSystemResizeNeeded, "Require file system resize of volume on node")
		return nil
	}
	if _, err := e.markFinished(ctx, pvc, newSize); err != nil {
		return err
	}
	c.events().Event(pvc, v1.EventTypeNormal, reasonResizeSuccessful, "Resize volume succeeded")
	return nil
}
