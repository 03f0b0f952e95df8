package snapshotter

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
)

// All writes are JSON merge patches of just the fields that change: no read
// before write, and they never undo a field another controller just set.

func (c *Controller) patch(ctx context.Context, content *snapv1.VolumeSnapshotContent, body map[string]any, subresources ...string) (*snapv1.VolumeSnapshotContent, error) {
	data, err := json.Marshal(body)
	if err != nil {
		return content, err
	}
	updated, err := c.snapClient().SnapshotV1().VolumeSnapshotContents().Patch(ctx, content.Name, types.MergePatchType, data, metav1.PatchOptions{}, subresources...)
	if err != nil {
		return content, fmt.Errorf("updating VolumeSnapshotContent %s: %w", content.Name, err)
	}
	return updated, nil
}

// setBeingCreated marks the content before CreateSnapshot is sent.
func (c *Controller) setBeingCreated(ctx context.Context, content *snapv1.VolumeSnapshotContent) (*snapv1.VolumeSnapshotContent, error) {
	if _, ok := content.Annotations[AnnBeingCreated]; ok {
		return content, nil
	}
	return c.patch(ctx, content, map[string]any{"metadata": map[string]any{
		"annotations": map[string]any{AnnBeingCreated: "yes"}}})
}

// removeBeingCreated clears the mark once the backend has answered.
func (c *Controller) removeBeingCreated(ctx context.Context, content *snapv1.VolumeSnapshotContent) (*snapv1.VolumeSnapshotContent, error) {
	if _, ok := content.Annotations[AnnBeingCreated]; !ok {
		return content, nil
	}
	return c.patch(ctx, content, map[string]any{"metadata": map[string]any{
		"annotations": map[string]any{AnnBeingCreated: nil}}})
}

// recordSnapshot writes what the driver said into status. Handle, creation
// time and restore size are set once; readiness follows the driver, and
// becoming ready clears an earlier error.
func (c *Controller) recordSnapshot(ctx context.Context, content *snapv1.VolumeSnapshotContent, handle string, snap *csi.Snapshot) (*snapv1.VolumeSnapshotContent, error) {
	st := content.Status
	if st == nil {
		st = &snapv1.VolumeSnapshotContentStatus{}
	}
	changes := map[string]any{}
	if st.SnapshotHandle == nil {
		changes["snapshotHandle"] = handle
	}
	if st.CreationTime == nil {
		changes["creationTime"] = creationTime(snap)
	}
	if st.RestoreSize == nil && snap.GetSizeBytes() > 0 {
		changes["restoreSize"] = snap.GetSizeBytes()
	}
	ready := snap.GetReadyToUse()
	if st.ReadyToUse == nil || *st.ReadyToUse != ready {
		changes["readyToUse"] = ready
		if ready && st.Error != nil {
			changes["error"] = nil
		}
	}
	if len(changes) == 0 {
		return content, nil
	}
	return c.patch(ctx, content, map[string]any{"status": changes}, "status")
}

// recordError reports a failure in status.error (readyToUse false) and as a
// Warning event; the event is emitted even when the status write fails, so
// the user sees the failure. A repeat of the error already recorded is not
// reported again.
func (c *Controller) recordError(ctx context.Context, content *snapv1.VolumeSnapshotContent, reason, message string) {
	if st := content.Status; st != nil && st.Error != nil && st.Error.Message != nil && *st.Error.Message == message {
		return
	}
	updated, err := c.patch(ctx, content, map[string]any{"status": map[string]any{
		"readyToUse": false,
		"error":      map[string]any{"time": metav1.NewTime(time.Now()), "message": message},
	}}, "status")
	c.warn(updated, reason, message)
	if err != nil {
		klog.FromContext(ctx).V(2).Info("Could not record the error in VolumeSnapshotContent status", "content", content.Name, "err", err)
	}
}

// clearSnapshotStatus forgets the deleted backend snapshot.
func (c *Controller) clearSnapshotStatus(ctx context.Context, content *snapv1.VolumeSnapshotContent) (*snapv1.VolumeSnapshotContent, error) {
	return c.patch(ctx, content, map[string]any{"status": map[string]any{
		"snapshotHandle": nil, "readyToUse": nil, "creationTime": nil, "restoreSize": nil,
	}}, "status")
}

// removeFinalizer drops ContentFinalizer; the resourceVersion makes it fail
// (and be retried) rather than drop a finalizer someone added meanwhile.
func (c *Controller) removeFinalizer(ctx context.Context, content *snapv1.VolumeSnapshotContent) error {
	if !slices.Contains(content.Finalizers, ContentFinalizer) {
		return nil
	}
	rest := slices.DeleteFunc(slices.Clone(content.Finalizers), func(f string) bool { return f == ContentFinalizer })
	if rest == nil {
		rest = []string{}
	}
	_, err := c.patch(ctx, content, map[string]any{"metadata": map[string]any{
		"finalizers": rest, "resourceVersion": content.ResourceVersion}})
	return err
}
