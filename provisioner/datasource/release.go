package datasource

import (
	"context"
	"fmt"
	"strings"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/internal/hub"
)

// Releasing sources: claim and snapshot events put source keys on the
// guard's queue; sync removes the protection finalizer from a source once
// no claim is being provisioned from it. Events also retry claims at once
// when their source becomes usable.

// usersOf lists the claims still being provisioned from the source: pending
// ones in its namespace and deleted ones whose CreateVolume is being finished.
func (g *Guard) usersOf(kind schema.GroupKind, ns, name string) ([]string, error) {
	claims, err := g.pvcs.PersistentVolumeClaims(ns).List(labels.Everything())
	if err != nil {
		return nil, err
	}
	var users []string
	uses := func(claim *v1.PersistentVolumeClaim) bool {
		k, n, s, ok := claimSource(claim)
		return ok && k == kind && n == ns && s == name
	}
	for _, claim := range claims {
		if pending(claim) && uses(claim) {
			users = append(users, claim.Name)
		}
	}
	for _, claim := range g.d.Claims.PendingClaims() {
		if uses(claim) {
			users = append(users, claim.Name+" (being finished)")
		}
	}
	return users, nil
}

// kickClaims retries at once the pending claims waiting for a source that
// just became usable, instead of leaving them to their backoff.
func (g *Guard) kickClaims(kind schema.GroupKind, ns, name string) {
	claims, err := g.pvcs.PersistentVolumeClaims(ns).List(labels.Everything())
	if err != nil {
		return
	}
	for _, claim := range claims {
		if k, n, s, ok := claimSource(claim); ok && k == kind && n == ns && s == name && pending(claim) {
			g.d.Claims.Retry(claim.Namespace + "/" + claim.Name)
		}
	}
}

func (g *Guard) claimChanged(oldObj, obj any) {
	claim, ok := obj.(*v1.PersistentVolumeClaim)
	if !ok {
		return
	}
	old, _ := oldObj.(*v1.PersistentVolumeClaim)
	if hasFinalizer(claim.Finalizers, FinalizerCloneSource) {
		g.queue.Add(sourceKey(KindPVC, claim.Namespace, claim.Name))
	}
	// A claim that stopped being pending may release its source.
	if kind, ns, name, ok := claimSource(claim); ok && !pending(claim) && (old == nil || pending(old)) {
		g.queue.Add(sourceKey(kind, ns, name))
	}
	// A clone source that just got bound: its clones need not wait for backoff.
	if old != nil && old.Status.Phase != v1.ClaimBound && claim.Status.Phase == v1.ClaimBound {
		g.kickClaims(KindPVC, claim.Namespace, claim.Name)
	}
}

func (g *Guard) claimDeleted(obj any) {
	claim, ok := hub.Object[*v1.PersistentVolumeClaim](obj)
	if !ok {
		return
	}
	if kind, ns, name, ok := claimSource(claim); ok {
		g.queue.Add(sourceKey(kind, ns, name))
	}
}

func (g *Guard) snapshotChanged(oldObj, obj any) {
	vs, ok := obj.(*snapv1.VolumeSnapshot)
	if !ok {
		return
	}
	if hasFinalizer(vs.Finalizers, FinalizerSnapshotSource) {
		g.queue.Add(sourceKey(KindVolumeSnapshot, vs.Namespace, vs.Name))
	}
	old, _ := oldObj.(*snapv1.VolumeSnapshot)
	if old != nil && !SnapshotReady(old) && SnapshotReady(vs) {
		g.kickClaims(KindVolumeSnapshot, vs.Namespace, vs.Name)
	}
}

// SnapshotReady: the VolumeSnapshot says readyToUse.
func SnapshotReady(vs *snapv1.VolumeSnapshot) bool {
	return vs.Status != nil && vs.Status.ReadyToUse != nil && *vs.Status.ReadyToUse
}

// sync removes the protection finalizer from a source that no claim is
// being provisioned from any more.
func (g *Guard) sync(ctx context.Context, key string) error {
	parts := strings.SplitN(key, "/", 3)
	if len(parts) != 3 {
		return nil
	}
	ns, name := parts[1], parts[2]
	var f finalizerTarget
	var kind schema.GroupKind
	switch parts[0] {
	case KindPVC.Kind:
		kind, f = KindPVC, g.claimTarget(ns, name)
	case KindVolumeSnapshot.Kind:
		if g.snapshots == nil || !g.snapshots.Ready() {
			return nil // no snapshot API: nothing can carry our finalizer
		}
		if !g.snapshotsSynced.Load() {
			return hub.RequeueAfter(time.Second) // the informers are syncing
		}
		kind, f = KindVolumeSnapshot, g.snapshotTarget(ns, name)
	default:
		return nil
	}
	cached, err := f.cached()
	if err != nil || cached == nil || !hasFinalizer(cached.GetFinalizers(), f.finalizer) {
		return err
	}
	users, err := g.usersOf(kind, ns, name)
	if err != nil || len(users) > 0 {
		if len(users) > 0 {
			klog.FromContext(ctx).V(4).Info("Data source still in use; keeping its finalizer", "source", key, "claims", users)
		}
		return err
	}
	g.d.Steps.Trigger(ctx, fmt.Sprintf("no claim is being provisioned from %s %s/%s any more: removing finalizer %s", parts[0], ns, name, f.finalizer))
	if err := f.set(ctx, cached, false); err != nil {
		return err
	}
	klog.FromContext(ctx).V(2).Info("Removed data source protection", "source", key, "finalizer", f.finalizer)
	return nil
}
