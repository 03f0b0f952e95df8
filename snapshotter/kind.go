package snapshotter

import (
	"context"
	"fmt"
	"time"

	groupv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumegroupsnapshot/v1"
	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/internal/edit"
)

// contentObject is either kind of content.
type contentObject interface {
	metav1.Object
	runtime.Object
}

// contentKind is what the single and the group path differ in when they
// write a content: VolumeSnapshotContents and VolumeGroupSnapshotContents
// follow the same object protocol (being-created mark, finalizer, status
// error and Warning event), with other names.
type contentKind[T contentObject] struct {
	name         string // the kind, in errors
	client       edit.Client[T]
	events       record.EventRecorder
	beingCreated string // the annotation set while a create may be in flight
	finalizer    string
	lastError    func(T) *snapv1.VolumeSnapshotError // status.error
	backend      []string                            // the status fields that name the backend snapshot
}

func (c *Controller) single() contentKind[*snapv1.VolumeSnapshotContent] {
	return contentKind[*snapv1.VolumeSnapshotContent]{name: "VolumeSnapshotContent",
		client: c.snapClient().SnapshotV1().VolumeSnapshotContents(), events: c.d.Events,
		beingCreated: AnnBeingCreated, finalizer: ContentFinalizer, lastError: snapshotError,
		backend: []string{"snapshotHandle", "readyToUse", "creationTime", "restoreSize"}}
}

func (c *Controller) groups() contentKind[*groupv1.VolumeGroupSnapshotContent] {
	return contentKind[*groupv1.VolumeGroupSnapshotContent]{name: "VolumeGroupSnapshotContent",
		client: c.snapClient().GroupsnapshotV1().VolumeGroupSnapshotContents(), events: c.d.Events,
		beingCreated: AnnGroupBeingCreated, finalizer: GroupContentFinalizer, lastError: groupError,
		backend: []string{"volumeGroupSnapshotHandle", "readyToUse", "creationTime", "error"}}
}

// err names the content a failed write was for.
func (k contentKind[T]) err(obj T, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("updating %s %s: %w", k.name, obj.GetName(), err)
}

// meta changes annotations or finalizers (edit.Custom: what another
// controller changed meanwhile is kept).
func (k contentKind[T]) meta(ctx context.Context, obj T, m edit.Meta) (T, error) {
	out, err := edit.Custom(ctx, k.client, obj, m)
	return out, k.err(obj, err)
}

// status patches just the status fields in changes.
func (k contentKind[T]) status(ctx context.Context, obj T, changes map[string]any) (T, error) {
	out, err := edit.Status(ctx, k.client, obj, changes)
	return out, k.err(obj, err)
}

// clearStatus forgets the deleted backend snapshot: the status fields that
// named it.
func (k contentKind[T]) clearStatus(ctx context.Context, obj T) (T, error) {
	changes := make(map[string]any, len(k.backend))
	for _, f := range k.backend {
		changes[f] = nil
	}
	return k.status(ctx, obj, changes)
}

// setBeingCreated marks the content before its create call is sent.
func (k contentKind[T]) setBeingCreated(ctx context.Context, obj T) (T, error) {
	return k.meta(ctx, obj, edit.SetAnnotation(k.beingCreated, "yes"))
}

// removeBeingCreated clears the mark once the backend has answered.
func (k contentKind[T]) removeBeingCreated(ctx context.Context, obj T) (T, error) {
	return k.meta(ctx, obj, edit.RemoveAnnotation(k.beingCreated))
}

// removeFinalizer releases the content for the API server to delete.
func (k contentKind[T]) removeFinalizer(ctx context.Context, obj T) error {
	_, err := k.meta(ctx, obj, edit.RemoveFinalizer(k.finalizer))
	return err
}

// warn emits a Warning event on the content.
func (k contentKind[T]) warn(obj T, reason, message string) {
	k.events.Event(obj, v1.EventTypeWarning, reason, message)
}

// reported runs step on obj and reports its failure, "what: error", under
// reason (recordError).
func (k contentKind[T]) reported(ctx context.Context, obj T, step func(context.Context, T) (T, error), reason, what string) (T, error) {
	updated, err := step(ctx, obj)
	if err != nil {
		k.recordError(ctx, updated, reason, fmt.Sprintf("%s: %v", what, err))
	}
	return updated, err
}

// recordError reports a failure in status.error (readyToUse false) and as a
// Warning event, the event even when the write fails, so the user sees the
// failure; a repeat of the error already recorded is not reported again.
func (k contentKind[T]) recordError(ctx context.Context, obj T, reason, message string) {
	if last := k.lastError(obj); last != nil && last.Message != nil && *last.Message == message {
		return
	}
	changes := map[string]any{"readyToUse": false, "error": edit.VolumeError(metav1.NewTime(time.Now()), message)}
	updated, err := edit.Status(ctx, k.client, obj, changes)
	k.warn(updated, reason, message)
	if err != nil {
		klog.FromContext(ctx).V(2).Info("Could not record the error in the status", "err", err)
	}
}
