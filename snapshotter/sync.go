package snapshotter

import (
	"context"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/internal/hub"
)

// Annotations and finalizer shared with the snapshot-controller.
const (
	// AnnBeingCreated is set while a CreateSnapshot call may be in flight in
	// the backend; the snapshot-controller does not delete the content then,
	// so a snapshot cut after a timeout is never leaked.
	AnnBeingCreated = "snapshot.storage.kubernetes.io/volumesnapshot-being-created"
	// AnnBeingDeleted is set by the snapshot-controller when the content may
	// be deleted from the backend.
	AnnBeingDeleted = "snapshot.storage.kubernetes.io/volumesnapshot-being-deleted"
	// ContentFinalizer protects a bound content; removed here once the
	// backend snapshot is dealt with.
	ContentFinalizer = "snapshot.storage.kubernetes.io/volumesnapshotcontent-bound-protection"
	// annGroupSnapshotHandle marks a member of a VolumeGroupSnapshot, which is
	// created by CreateVolumeGroupSnapshot, not by CreateSnapshot.
	annGroupSnapshotHandle = "groupsnapshot.storage.k8s.io/volumeGroupSnapshotHandle"
)

// sync reconciles one VolumeSnapshotContent, named by key.
func (c *Controller) sync(ctx context.Context, key string) error {
	cached, err := c.contents.Get(key)
	if apierrors.IsNotFound(err) {
		c.forgetPolls(key)
		return nil
	}
	if err != nil {
		return err
	}
	if !c.isMine(cached) {
		return nil
	}
	content := cached.DeepCopy()
	klog.FromContext(ctx).V(5).Info("Syncing VolumeSnapshotContent", "content", key)

	if shouldDelete(content) {
		c.forgetPolls(key)
		return c.syncDelete(ctx, content)
	}
	_, groupMember := content.Annotations[annGroupSnapshotHandle]
	switch {
	case groupMember && content.Spec.Source.SnapshotHandle == nil && (content.Status == nil || content.Status.SnapshotHandle == nil):
		// Cut by CreateVolumeGroupSnapshot (group_sync.go), never by
		// CreateSnapshot; the snapshot-controller writes its handles next.
		return nil
	case content.Spec.Source.VolumeHandle != nil && content.Status == nil:
		c.d.Steps.Trigger(ctx, "A VolumeSnapshotContent asks for a snapshot of volume "+*content.Spec.Source.VolumeHandle+": cut it")
		content, err = c.create(ctx, content)
	case contentReady(content):
		// Done; only a leftover being-created annotation may need cleaning.
		c.forgetPolls(key)
		_, err = c.single().removeBeingCreated(ctx, content)
		return err
	case groupMember && content.Spec.Source.SnapshotHandle == nil:
		c.d.Steps.Trigger(ctx, "A member of a group snapshot is not ready to use yet: ask the driver for snapshot "+*content.Status.SnapshotHandle)
		content, err = c.checkMember(ctx, content)
	case content.Spec.Source.SnapshotHandle != nil:
		c.d.Steps.Trigger(ctx, "A pre-provisioned VolumeSnapshotContent names snapshot "+*content.Spec.Source.SnapshotHandle+": ask the driver for its state")
		content, err = c.checkExisting(ctx, content)
	default:
		// CreateSnapshot is idempotent by name: asking again is how the
		// sidecar learns when a cut snapshot becomes ready to use.
		if content.Status.SnapshotHandle == nil {
			c.d.Steps.Trigger(ctx, "The last CreateSnapshot failed: try again")
		} else {
			c.d.Steps.Trigger(ctx, "The snapshot is not ready to use yet: ask the driver again")
		}
		content, err = c.recheck(ctx, content)
	}
	if err != nil {
		return err
	}
	return c.settle(key, shouldDelete(content), func() error { return c.syncDelete(ctx, content) }, contentReady(content))
}

// settle ends a sync of either kind after its step: a content deleted while
// the create ran (removing the being-created mark, our own write filtered
// from the events, released the deletion) is deleted now, with del; one not
// ready is polled again.
func (c *Controller) settle(poll string, deleting bool, del func() error, ready bool) error {
	if deleting {
		c.forgetPolls(poll)
		return del()
	}
	if !ready {
		return hub.RequeueAfter(c.nextPoll(poll))
	}
	c.forgetPolls(poll)
	return nil
}

// isMine: a content of this driver with a source, whose class (if still
// there) is also this driver's.
func (c *Controller) isMine(content *snapv1.VolumeSnapshotContent) bool {
	if content.Spec.Driver != c.d.Driver {
		return false
	}
	if content.Spec.Source.VolumeHandle == nil && content.Spec.Source.SnapshotHandle == nil {
		return false
	}
	if name := content.Spec.VolumeSnapshotClassName; name != nil {
		if class, err := c.classes.Get(*name); err == nil && class.Driver != c.d.Driver {
			return false
		}
	}
	return true
}

// shouldDelete: the content is being deleted and the backend snapshot may go.
func shouldDelete(content *snapv1.VolumeSnapshotContent) bool {
	unbound := content.Spec.Source.SnapshotHandle != nil && content.Spec.VolumeSnapshotRef.UID == ""
	return mayDelete(content, unbound, AnnBeingCreated, AnnBeingDeleted)
}

// mayDelete: a content of either kind is being deleted and its backend
// snapshot may go.
func mayDelete(content metav1.Object, unboundPreProvisioned bool, beingCreated, beingDeleted string) bool {
	if content.GetDeletionTimestamp() == nil {
		return false
	}
	// A pre-provisioned content that was never bound has no VolumeSnapshot
	// whose controller would set the being-deleted annotation.
	if unboundPreProvisioned {
		return true
	}
	// A create may still be running in the backend: wait for its outcome,
	// or the snapshot it cuts would be leaked.
	if _, ok := content.GetAnnotations()[beingCreated]; ok {
		return false
	}
	_, ok := content.GetAnnotations()[beingDeleted]
	return ok
}

func contentReady(content *snapv1.VolumeSnapshotContent) bool {
	return content.Status != nil && content.Status.ReadyToUse != nil && *content.Status.ReadyToUse
}

// changeNeedsSync filters update events: the controller's own writes (status,
// finalizers, the being-created annotation) do not need a sync, so they do
// not bypass the queue's backoff; resyncs and a change to ready do.
func changeNeedsSync(old, cur *snapv1.VolumeSnapshotContent) bool {
	return needsSync(old, cur, contentReady, AnnBeingCreated, func(cur, old *snapv1.VolumeSnapshotContent) *snapv1.VolumeSnapshotContent {
		out := cur.DeepCopy()
		out.Status = old.Status
		return out
	})
}

// needsSync is changeNeedsSync for either kind of content: withOldStatus
// returns a copy of cur carrying old's status.
func needsSync[T metav1.Object](old, cur T, ready func(T) bool, annotation string, withOldStatus func(cur, old T) T) bool {
	if old.GetResourceVersion() == cur.GetResourceVersion() {
		return true
	}
	if !ready(old) && ready(cur) {
		return true
	}
	sanitized := withOldStatus(cur, old)
	sanitized.SetResourceVersion(old.GetResourceVersion())
	sanitized.SetManagedFields(old.GetManagedFields())
	sanitized.SetFinalizers(old.GetFinalizers())
	sanitized.SetAnnotations(withAnnotationFrom(sanitized.GetAnnotations(), old.GetAnnotations(), annotation))
	return !equality.Semantic.DeepEqual(old, sanitized)
}

// withAnnotationFrom returns cur with annotation key as in old.
func withAnnotationFrom(cur, old map[string]string, key string) map[string]string {
	out := make(map[string]string, len(cur))
	for k, v := range cur {
		if k != key {
			out[k] = v
		}
	}
	if v, ok := old[key]; ok {
		out[key] = v
	}
	if len(out) == 0 && old == nil {
		return nil
	}
	return out
}

// nextPoll spaces readiness polls of one content exponentially, from
// --retry-interval-start to --retry-interval-max.
func (c *Controller) nextPoll(key string) time.Duration {
	c.pollMu.Lock()
	n := c.polls[key]
	c.polls[key] = n + 1
	c.pollMu.Unlock()
	d := c.d.RetryStart
	if d <= 0 {
		d = time.Second
	}
	limit := c.d.RetryMax
	if limit <= 0 {
		limit = 5 * time.Minute
	}
	for range n {
		if d >= limit/2 {
			return limit
		}
		d *= 2
	}
	return min(d, limit)
}

func (c *Controller) forgetPolls(key string) {
	c.pollMu.Lock()
	delete(c.polls, key)
	c.pollMu.Unlock()
}
