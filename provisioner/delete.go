package provisioner

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/csi-hub/csi-hub/internal/edit"
	"github.com/csi-hub/csi-hub/internal/hub"

	"github.com/container-storage-interface/spec/lib/go/csi"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
)

// syncVolume keeps the provisioner finalizer right on the driver's PVs and
// deletes the backend volume and the PV once a Delete-policy PV is Released.
func (c *Controller) syncVolume(ctx context.Context, name string) error {
	pv, err := hub.Existing(c.pvLister.Get(name))
	if pv == nil || err != nil {
		return err
	}
	if !c.ownsVolume(pv) {
		return nil
	}
	if c.inFlight.deletedHere(pv.UID) {
		return nil // our deletion completed; the informer has not caught up yet
	}
	if err := c.fixFinalizer(ctx, pv); err != nil {
		return err
	}
	if !shouldDelete(pv) {
		return nil
	}
	return c.deleteVolume(ctx, pv)
}

// fixFinalizer adds the finalizer to a bound Delete-policy PV that lacks it
// (e.g. created by an older sidecar) and removes it when the policy became
// Retain or Recycle, as the sidecar does. PVs we create already carry it, so
// this writes nothing for them.
func (c *Controller) fixFinalizer(ctx context.Context, pv *v1.PersistentVolume) error {
	has := slices.Contains(pv.Finalizers, finalizerPV)
	policy := pv.Spec.PersistentVolumeReclaimPolicy
	var m edit.Meta
	switch {
	case !has && policy == v1.PersistentVolumeReclaimDelete && pv.DeletionTimestamp == nil && pv.Status.Phase == v1.VolumeBound:
		m = edit.AddFinalizer(finalizerPV)
		c.d.Steps.Trigger(ctx, "bound PV with reclaimPolicy Delete lacks the provisioner finalizer: adding it so the backend volume cannot leak")
	case has && (policy == v1.PersistentVolumeReclaimRetain || policy == v1.PersistentVolumeReclaimRecycle):
		m = edit.RemoveFinalizer(finalizerPV)
		c.d.Steps.Trigger(ctx, "PV reclaimPolicy is "+string(policy)+": the provisioner will not delete its volume, removing its finalizer")
	default:
		return nil
	}
	if _, err := edit.BuiltIn(ctx, c.d.Kube.CoreV1().PersistentVolumes(), pv, m); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("updating finalizers of PV %s: %w", pv.Name, err)
	}
	return nil
}

// shouldDelete: Released by kube-controller-manager, reclaim policy Delete,
// and not already past our finalizer.
func shouldDelete(pv *v1.PersistentVolume) bool {
	if pv.DeletionTimestamp != nil && !slices.Contains(pv.Finalizers, finalizerPV) {
		return false
	}
	return pv.Status.Phase == v1.VolumeReleased && pv.Spec.PersistentVolumeReclaimPolicy == v1.PersistentVolumeReclaimDelete
}

// deleteVolume: DeleteVolume (idempotent: NotFound counts as done), then the
// PV, then our finalizer. Each step is safe to repeat after a crash.
func (c *Controller) deleteVolume(ctx context.Context, pv *v1.PersistentVolume) (err error) {
	vol, err := c.csiVolume(ctx, pv) // an in-tree PV as the driver sees it (migration.go)
	if err != nil {
		c.events.Event(pv, v1.EventTypeWarning, reasonVolumeFailedDelete, fmt.Sprintf("failed to delete volume %s: %v", pv.Name, err))
		return err
	}
	if vol == nil {
		return nil
	}
	start := time.Now()
	defer func() { c.stats.deleted(pv, err, start) }()
	c.d.Steps.Trigger(ctx, fmt.Sprintf("PV %s was released by its claim and its reclaimPolicy is Delete: deleting backend volume %s", pv.Name, vol.Spec.CSI.VolumeHandle))
	if err := c.callDeleteVolume(markMigrated(ctx, vol != pv), vol); err != nil { // vol: pv translated when in-tree
		if inUse := (*volumeInUseError)(nil); errors.As(err, &inUse) {
			// Postponed, not failed: a Normal event, as external-provisioner v6.4 (#1588).
			c.events.Event(pv, v1.EventTypeNormal, reasonVolumeDelete, inUse.Error())
			klog.FromContext(ctx).V(4).Info("Volume deletion postponed", "PV", pv.Name, "reason", inUse.Error())
			return err
		}
		msg := fmt.Sprintf("failed to delete volume %s: %v", pv.Name, err)
		c.events.Event(pv, v1.EventTypeWarning, reasonVolumeFailedDelete, msg)
		klog.FromContext(ctx).Error(err, "Deleting volume failed; will retry with backoff", "PV", pv.Name, "handle", vol.Spec.CSI.VolumeHandle)
		return err
	}
	if pv.DeletionTimestamp == nil {
		uid := pv.UID
		err := c.d.Kube.CoreV1().PersistentVolumes().Delete(ctx, pv.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting PV %s: %w", pv.Name, err)
		}
	}
	if err := c.removeFinalizer(ctx, pv); err != nil {
		return fmt.Errorf("removing finalizer %s from PV %s: %w", finalizerPV, pv.Name, err)
	}
	c.inFlight.finishedPV(pv.UID)
	c.capacity.Refresh()
	klog.FromContext(ctx).Info("Deleted volume", "PV", pv.Name, "handle", vol.Spec.CSI.VolumeHandle)
	return nil
}

// removeFinalizer drops our finalizer (edit.BuiltIn: deletes just this list
// item, no resourceVersion, so the common case costs one write even though
// our own Delete just changed the PV, and a stale cached copy cannot undo
// the attacher's finalizer removal of a moment ago).
func (c *Controller) removeFinalizer(ctx context.Context, pv *v1.PersistentVolume) error {
	_, err := edit.BuiltIn(ctx, c.d.Kube.CoreV1().PersistentVolumes(), pv, edit.RemoveFinalizer(finalizerPV))
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func (c *Controller) callDeleteVolume(ctx context.Context, pv *v1.PersistentVolume) error {
	if c.vas != nil {
		vas, err := hub.AttachmentsOf(c.vas, pv.Name)
		if err != nil {
			return fmt.Errorf("listing VolumeAttachments: %w", err)
		}
		for _, va := range vas {
			if n := va.Spec.Source.PersistentVolumeName; n != nil && *n == pv.Name {
				return &volumeInUseError{fmt.Sprintf("persistentvolume %s is still attached to node %s, waiting for detach", pv.Name, va.Spec.NodeName)}
			}
		}
	}
	req := &csi.DeleteVolumeRequest{VolumeId: pv.Spec.CSI.VolumeHandle}
	ref, err := c.deletionSecretRef(ctx, pv)
	if err != nil {
		return err
	}
	if ref != nil {
		// A deleted secret must not block deletion forever: call without it
		// and let the driver say whether it needs it.
		if req.Secrets, err = hub.ReadSecret(ctx, c.d.Kube, ref); err != nil {
			klog.FromContext(ctx).Error(err, "Deletion secret unavailable; calling DeleteVolume without it", "PV", pv.Name)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, c.d.Timeout)
	defer cancel()
	_, err = c.d.CSI.DeleteVolume(cctx, req)
	return err
}

// deletionSecretRef: from the PV's annotations (written at provisioning), or
// for older PVs from the StorageClass, as the sidecar does.
func (c *Controller) deletionSecretRef(ctx context.Context, pv *v1.PersistentVolume) (*v1.SecretReference, error) {
	name, hasName := pv.Annotations[annDeletionSecretName]
	ns, hasNS := pv.Annotations[annDeletionSecretNamespace]
	if hasName && hasNS {
		if name == "" || ns == "" {
			return nil, nil
		}
		return &v1.SecretReference{Name: name, Namespace: ns}, nil
	}
	if pv.Spec.StorageClassName == "" {
		return nil, nil
	}
	sc, err := c.scLister.Get(pv.Spec.StorageClassName)
	if err != nil {
		klog.FromContext(ctx).Info("StorageClass of PV unavailable; deleting without secrets", "PV", pv.Name, "storageClass", pv.Spec.StorageClassName, "err", err)
		return nil, nil
	}
	var claim *v1.PersistentVolumeClaim
	if ref := pv.Spec.ClaimRef; ref != nil {
		claim = &v1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: ref.Name, Namespace: ref.Namespace}}
	}
	return secretRef(secretProvisioner, sc.Parameters, pv.Name, claim)
}

// volumeInUseError: a VolumeAttachment still names the PV, so deletion waits
// (the library's VolumeInUseError).
type volumeInUseError struct{ reason string }

func (e *volumeInUseError) Error() string { return e.reason }
