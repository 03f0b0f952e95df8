package snapshotter

import (
	"context"
	"fmt"

	"github.com/csi-hub/csi-hub/internal/hub"

	"github.com/container-storage-interface/spec/lib/go/csi"
	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
)

// syncDelete handles a content being deleted: with deletionPolicy Delete the
// backend snapshot is deleted first; then (also for Retain) the finalizer is
// removed so the API server can finish the deletion.
func (c *Controller) syncDelete(ctx context.Context, content *snapv1.VolumeSnapshotContent) error {
	if handle := backendHandle(content); handle != "" && content.Spec.DeletionPolicy == snapv1.VolumeSnapshotContentDelete {
		c.d.Steps.Trigger(ctx, "The VolumeSnapshotContent is being deleted with deletionPolicy Delete: delete snapshot "+handle+" in the backend")
		var err error
		if content, err = c.deleteBackendSnapshot(ctx, content, handle); err != nil {
			return err
		}
	} else if content.Spec.DeletionPolicy == snapv1.VolumeSnapshotContentRetain {
		c.d.Steps.Trigger(ctx, "The VolumeSnapshotContent is being deleted with deletionPolicy Retain: keep the backend snapshot, release the object")
	}
	return c.single().removeFinalizer(ctx, content)
}

// backendHandle is the snapshot to delete, "" when there is nothing to delete:
// none was recorded in status, or it belongs to a group snapshot (deleted with
// the group). As with the sidecar, a pre-provisioned content whose handle was
// never confirmed by ListSnapshots (status unset: a typo, a foreign handle)
// only loses its finalizer: csi-hub deletes nothing it never saw exist.
func backendHandle(content *snapv1.VolumeSnapshotContent) string {
	st := content.Status
	if st == nil || st.VolumeGroupSnapshotHandle != nil || st.SnapshotHandle == nil {
		return ""
	}
	return *st.SnapshotHandle
}

func (c *Controller) deleteBackendSnapshot(ctx context.Context, content *snapv1.VolumeSnapshotContent, handle string) (*snapv1.VolumeSnapshotContent, error) {
	ref, err := snapshotterSecretRef(content)
	var secrets map[string]string
	if err == nil {
		secrets, err = hub.ReadSecret(ctx, c.d.Kube, ref)
	}
	if err != nil {
		c.single().warn(content, ReasonDeleteError, "Failed to get snapshot credentials")
		return content, fmt.Errorf("getting the snapshotter secret to delete snapshot %s of VolumeSnapshotContent %s: %w", handle, content.Name, err)
	}
	cctx, cancel := context.WithTimeout(ctx, c.d.Timeout)
	defer cancel()
	if _, err := c.d.CSI.DeleteSnapshot(cctx, &csi.DeleteSnapshotRequest{SnapshotId: handle, Secrets: secrets}); err != nil {
		c.single().warn(content, ReasonDeleteError, "Failed to delete snapshot")
		return content, fmt.Errorf("failed to delete snapshot %s of VolumeSnapshotContent %s: %w", handle, content.Name, err)
	}
	// Forget the handle at once: should removing the finalizer fail, the
	// retry does not delete a snapshot twice (harmless, but a needless call).
	updated, err := c.single().clearStatus(ctx, content)
	if err != nil {
		c.single().warn(content, ReasonDeleteError, "Failed to clear content status")
		return content, err
	}
	return updated, nil
}
