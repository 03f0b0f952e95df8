package snapshotter

import (
	"context"
	"fmt"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/internal/edit"
)

// Writes follow internal/edit: merge patches of just the fields that change,
// no read before write, never undoing a field another controller just set.

func (c *Controller) contentClient() edit.Client[*snapv1.VolumeSnapshotContent] {
	return c.snapClient().SnapshotV1().VolumeSnapshotContents()
}

// updateErr names the object a failed write was for.
func updateErr(kind, name string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("updating %s %s: %w", kind, name, err)
}

func contentErr(content *snapv1.VolumeSnapshotContent, err error) error {
	return updateErr("VolumeSnapshotContent", content.Name, err)
}

// setBeingCreated marks the content before CreateSnapshot is sent.
func (c *Controller) setBeingCreated(ctx context.Context, content *snapv1.VolumeSnapshotContent) (*snapv1.VolumeSnapshotContent, error) {
	out, err := edit.Custom(ctx, c.contentClient(), content, edit.SetAnnotation(AnnBeingCreated, "yes"))
	return out, contentErr(content, err)
}

// removeBeingCreated clears the mark once the backend has answered.
func (c *Controller) removeBeingCreated(ctx context.Context, content *snapv1.VolumeSnapshotContent) (*snapv1.VolumeSnapshotContent, error) {
	out, err := edit.Custom(ctx, c.contentClient(), content, edit.RemoveAnnotation(AnnBeingCreated))
	return out, contentErr(content, err)
}

// recordSnapshot writes what the driver said into status. Handle, creation
// time and restore size are set once; readiness follows the driver, and
// becoming ready clears an earlier error.
func (c *Controller) recordSnapshot(ctx context.Context, content *snapv1.VolumeSnapshotContent, handle string, snap *csi.Snapshot) (*snapv1.VolumeSnapshotContent, error) {
	st := content.Status
	if st == nil {
		st = &snapv1.VolumeSnapshotContentStatus{}
	}
	changes := readiness(st.ReadyToUse, st.Error, snap.GetReadyToUse())
	if st.SnapshotHandle == nil {
		changes["snapshotHandle"] = handle
	}
	if st.CreationTime == nil {
		changes["creationTime"] = creationTime(snap)
	}
	if st.RestoreSize == nil && snap.GetSizeBytes() > 0 {
		changes["restoreSize"] = snap.GetSizeBytes()
	}
	out, err := edit.Status(ctx, c.contentClient(), content, changes)
	return out, contentErr(content, err)
}

// readiness is the status change that makes readyToUse follow the driver;
// becoming ready clears an earlier error.
func readiness(have *bool, lastErr *snapv1.VolumeSnapshotError, ready bool) map[string]any {
	changes := map[string]any{}
	if have == nil || *have != ready {
		changes["readyToUse"] = ready
		if ready && lastErr != nil {
			changes["error"] = nil
		}
	}
	return changes
}

// recordError reports a failure in status.error (readyToUse false) and as a
// Warning event.
func (c *Controller) recordError(ctx context.Context, content *snapv1.VolumeSnapshotContent, reason, message string) {
	var last *snapv1.VolumeSnapshotError
	if content.Status != nil {
		last = content.Status.Error
	}
	reportError(ctx, c.contentClient(), content, last, c.warn, reason, message)
}

// reportError writes the error status and emits the Warning event even when
// the write fails, so the user sees the failure; a repeat of the error
// already recorded is not reported again.
func reportError[T metav1.Object](ctx context.Context, client edit.Patcher[T], obj T, last *snapv1.VolumeSnapshotError, warn func(T, string, string), reason, message string) {
	if last != nil && last.Message != nil && *last.Message == message {
		return
	}
	changes := map[string]any{"readyToUse": false, "error": edit.VolumeError(metav1.NewTime(time.Now()), message)}
	updated, err := edit.Status(ctx, client, obj, changes)
	warn(updated, reason, message)
	if err != nil {
		klog.FromContext(ctx).V(2).Info("Could not record the error in the status", "err", err)
	}
}

// clearSnapshotStatus forgets the deleted backend snapshot.
func (c *Controller) clearSnapshotStatus(ctx context.Context, content *snapv1.VolumeSnapshotContent) (*snapv1.VolumeSnapshotContent, error) {
	out, err := edit.Status(ctx, c.contentClient(), content, map[string]any{
		"snapshotHandle": nil, "readyToUse": nil, "creationTime": nil, "restoreSize": nil,
	})
	return out, contentErr(content, err)
}

// removeFinalizer drops ContentFinalizer (edit.Custom: a finalizer someone
// added meanwhile is kept).
func (c *Controller) removeFinalizer(ctx context.Context, content *snapv1.VolumeSnapshotContent) error {
	_, err := edit.Custom(ctx, c.contentClient(), content, edit.RemoveFinalizer(ContentFinalizer))
	return contentErr(content, err)
}
