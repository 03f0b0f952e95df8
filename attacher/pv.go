package attacher

import (
	"context"
	"fmt"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/internal/edit"
	"github.com/csi-hub/csi-hub/internal/hub"
	"github.com/csi-hub/csi-hub/internal/migration"
)

// migrationRolledBack: an in-tree PV that is not (or no longer) migrated to
// this driver, i.e. CSI migration was switched off and kube-controller-manager
// attaches it itself again. external-attacher then drops its finalizer once
// no VolumeAttachment uses the PV, and so does csi-hub.
func (c *Controller) migrationRolledBack(pv *v1.PersistentVolume) bool {
	return migration.IsInTree(pv) && pv.Annotations[migration.AnnMigratedTo] != c.d.Driver
}

// syncPV releases a PV that is being deleted from our finalizer once no
// VolumeAttachment refers to it any more (detach needs the PV's volume handle,
// so the PV must outlive its attachments). A PV that is not being deleted
// keeps the finalizer, as with the external-attacher.
func (c *Controller) syncPV(ctx context.Context, name string) error {
	pv, err := hub.Existing(c.pvLister.Get(name))
	if pv == nil || err != nil {
		return err
	}
	if (pv.DeletionTimestamp == nil && !c.migrationRolledBack(pv)) || !hasFinalizer(pv.Finalizers, c.finalizer) {
		return nil
	}
	if c.pvStale.isStale(name, pv.ResourceVersion) {
		return nil // our own write is on its way and queues the PV again
	}
	vas, err := hub.AttachmentsOf(c.vaByPV, name)
	if err != nil {
		return err
	}
	for _, va := range vas {
		if src := va.Spec.Source.PersistentVolumeName; src != nil && *src == name {
			// Its deletion event queues this PV again.
			klog.FromContext(ctx).V(4).Info("PersistentVolume still has a VolumeAttachment; keeping the finalizer",
				"PersistentVolume", name, "VolumeAttachment", va.Name)
			return nil
		}
	}
	if pv.DeletionTimestamp == nil {
		c.d.Steps.Trigger(ctx, "in-tree PersistentVolume is no longer migrated to this driver (no "+migration.AnnMigratedTo+" naming it) and no VolumeAttachment uses it: removing the attacher's finalizer")
	} else {
		c.d.Steps.Trigger(ctx, "PersistentVolume is being deleted and no VolumeAttachment uses it any more: removing the attacher's finalizer")
	}
	if _, err := c.patchPVMeta(ctx, pv, edit.RemoveFinalizer(c.finalizer)); err != nil && !apierrors.IsNotFound(err) {
		c.pvStale.forget(name)
		return fmt.Errorf("removing finalizer %s: %w", c.finalizer, err)
	}
	return nil
}
