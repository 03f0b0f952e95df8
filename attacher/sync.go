package attacher

import (
	"context"
	"fmt"

	"google.golang.org/grpc/status"
	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/internal/edit"
	"github.com/csi-hub/csi-hub/internal/hub"
)

// syncVA brings one VolumeAttachment to its wanted state: attached while it
// exists, detached (and free of our finalizer) once it is being deleted.
func (c *Controller) syncVA(ctx context.Context, name string) error {
	va, err := hub.Existing(c.vaLister.Get(name))
	if va == nil || err != nil {
		return err
	}
	if va.Spec.Attacher != c.d.Driver {
		return nil
	}
	if c.stale.isStale(name, va.ResourceVersion) {
		klog.FromContext(ctx).V(5).Info("VolumeAttachment cache behind our last write; waiting for its update", "VolumeAttachment", name)
		return nil
	}
	if !c.publish {
		err = c.syncTrivial(ctx, va)
	} else if va.DeletionTimestamp == nil {
		err = c.syncAttach(ctx, va)
	} else {
		err = c.syncDetach(ctx, va)
	}
	if err != nil {
		c.stale.forget(name)
	}
	return err
}

// syncTrivial serves drivers without PUBLISH_UNPUBLISH_VOLUME: there is
// nothing to attach, so the VolumeAttachment is marked attached with no CSI
// call and no finalizer, and its deletion needs nothing.
func (c *Controller) syncTrivial(ctx context.Context, va *storagev1.VolumeAttachment) error {
	if va.DeletionTimestamp != nil {
		// A finalizer left by an earlier run whose driver could publish would
		// block the deletion forever; there is nothing to unpublish now.
		if hasFinalizer(va.Finalizers, c.finalizer) {
			c.d.Steps.Trigger(ctx, "VolumeAttachment is being deleted and the driver has no attach step: removing the attacher's finalizer")
			_, err := c.patchVAMeta(ctx, va, edit.RemoveFinalizer(c.finalizer))
			return err
		}
		return nil
	}
	if va.Status.Attached {
		return nil
	}
	c.d.Steps.Trigger(ctx, "VolumeAttachment created; the driver has no ControllerPublish step, so the volume is marked attached at once")
	_, err := c.writeStatus(ctx, va, storagev1.VolumeAttachmentStatus{Attached: true})
	return err
}

func (c *Controller) syncAttach(ctx context.Context, va *storagev1.VolumeAttachment) error {
	force := c.takeForce(va.Name)
	if va.Status.Attached && !force {
		return nil
	}
	why := fmt.Sprintf("VolumeAttachment asks for %s on node %s: publishing the volume to the node", sourceName(va), va.Spec.NodeName)
	if force {
		why = fmt.Sprintf("the driver no longer lists %s as published to node %s: publishing it again", sourceName(va), va.Spec.NodeName)
	}
	c.d.Steps.Trigger(ctx, why)
	va, publishContext, err := c.attach(ctx, va)
	if err != nil {
		c.reportError(ctx, va, err, true)
		return fmt.Errorf("attaching: %w", err)
	}
	if _, err := c.writeStatus(ctx, va, storagev1.VolumeAttachmentStatus{
		Attached:           true,
		AttachmentMetadata: publishContext,
	}); err != nil {
		return fmt.Errorf("marking as attached: %w", err)
	}
	klog.FromContext(ctx).V(2).Info("Attached", "VolumeAttachment", va.Name, "node", va.Spec.NodeName)
	return nil
}

func (c *Controller) syncDetach(ctx context.Context, va *storagev1.VolumeAttachment) error {
	force := c.takeForce(va.Name)
	if !hasFinalizer(va.Finalizers, c.finalizer) && !force {
		return nil // never published by us, or already detached
	}
	c.d.Steps.Trigger(ctx, fmt.Sprintf("VolumeAttachment of %s on node %s is being deleted: unpublishing the volume from the node",
		sourceName(va), va.Spec.NodeName))
	if err := c.detach(ctx, va); err != nil {
		c.reportError(ctx, va, err, false)
		return fmt.Errorf("detaching: %w", err)
	}
	if err := c.markDetached(ctx, va); err != nil {
		return fmt.Errorf("marking as detached: %w", err)
	}
	klog.FromContext(ctx).V(2).Info("Detached", "VolumeAttachment", va.Name, "node", va.Spec.NodeName)
	return nil
}

// markDetached removes our finalizer first, then clears the status. In that
// order a crash in between leaves a VolumeAttachment that is gone (or
// plainly detached), never one with the finalizer and attached=false, which
// would look like an attach that timed out and cost a second Unpublish.
func (c *Controller) markDetached(ctx context.Context, va *storagev1.VolumeAttachment) error {
	va, err := c.patchVAMeta(ctx, va, edit.RemoveFinalizer(c.finalizer))
	if err != nil {
		return err
	}
	if va.DeletionTimestamp != nil && len(va.Finalizers) == 0 {
		return nil // the API server removes it now; no status left to write
	}
	_, err = c.writeStatus(ctx, va, storagev1.VolumeAttachmentStatus{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// reportError saves a failed attach or detach in the VolumeAttachment's
// status (kube-controller-manager and kubelet read it from there) and emits a
// Warning event on it. A failure to save is only logged: the operation's own
// error is what the retry is about.
func (c *Controller) reportError(ctx context.Context, va *storagev1.VolumeAttachment, opErr error, attach bool) {
	if ctx.Err() != nil {
		return // shutting down: the call was cut off by us, not failed by the driver
	}
	verr := &storagev1.VolumeError{Time: metav1.Now(), Message: opErr.Error()}
	if st, ok := status.FromError(opErr); ok {
		code := int32(st.Code())
		verr.ErrorCode = &code // API servers without MutableCSINodeAllocatableCount drop it
	}
	want := *va.Status.DeepCopy()
	reason := "AttachFailed"
	if attach {
		want.AttachError = verr
	} else {
		want.DetachError = verr
		reason = "DetachFailed"
	}
	if _, err := c.writeStatus(ctx, va, want); err != nil {
		klog.FromContext(ctx).Error(err, "Saving the error in the VolumeAttachment status failed", "VolumeAttachment", va.Name, "error", opErr)
	}
	// external-attacher's source component, "csi-attacher <driver>".
	c.d.Events.Event(va, v1.EventTypeWarning, reason, opErr.Error())
}

func sourceName(va *storagev1.VolumeAttachment) string {
	if pv := va.Spec.Source.PersistentVolumeName; pv != nil {
		return "PersistentVolume " + *pv
	}
	return "an inline volume"
}
