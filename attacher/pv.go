package attacher

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/klog/v2"
)

// syncPV releases a PV that is being deleted from our finalizer once no
// VolumeAttachment refers to it any more (detach needs the PV's volume handle,
// so the PV must outlive its attachments). A PV that is not being deleted
// keeps the finalizer, as with the external-attacher.
func (c *Controller) syncPV(ctx context.Context, name string) error {
	pv, err := c.pvLister.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if pv.DeletionTimestamp == nil || !hasFinalizer(pv.Finalizers, c.finalizer) {
		return nil
	}
	if c.pvStale.isStale(name, pv.ResourceVersion) {
		return nil // our own write is on its way and queues the PV again
	}
	vas, err := c.vaLister.List(labels.Everything())
	if err != nil {
		return err
	}
	for _, va := range vas {
		if src := va.Spec.Source.PersistentVolumeName; src != nil && *src == name {
			// Its deletion event queues this PV again.
			klog.V(4).InfoS("PersistentVolume still has a VolumeAttachment; keeping the finalizer",
				"PersistentVolume", name, "VolumeAttachment", va.Name)
			return nil
		}
	}
	c.h.Steps.Trigger(ctx, "PersistentVolume is being deleted and no VolumeAttachment uses it any more: removing the attacher's finalizer")
	if _, err := c.patchPVMeta(ctx, pv, removeFinalizer(c.finalizer)); err != nil && !apierrors.IsNotFound(err) {
		c.pvStale.forget(name)
		return fmt.Errorf("removing finalizer %s: %w", c.finalizer, err)
	}
	return nil
}
