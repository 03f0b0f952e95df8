package provisioner

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/container-storage-interface/spec/lib/go/csi"
	snaplisters "github.com/kubernetes-csi/external-snapshotter/client/v8/listers/volumesnapshot/v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/cache"

	"github.com/csi-hub/csi-hub/internal/hub"
)

// Finalizers external-provisioner puts on a data source while a claim is
// being provisioned from it, so the source cannot vanish under CreateVolume.
// (The snapshot-controller keeps its own snapshot.storage.kubernetes.io/
// volumesnapshot-as-source-protection beside ours; we never touch it.)
const (
	finalizerCloneSource    = "provisioner.storage.kubernetes.io/cloning-protection"
	finalizerSnapshotSource = "provisioner.storage.kubernetes.io/volumesnapshot-as-source-protection"
	// annAllowVolumeModeChange on a VolumeSnapshotContent lets a restore
	// change the volume mode (external-provisioner's
	// --prevent-volume-mode-conversion, on by default).
	annAllowVolumeModeChange = "snapshot.storage.kubernetes.io/allow-volume-mode-change"
)

// sourceGuard resolves the built-in data sources (clone of a PVC, restore of
// a VolumeSnapshot) and keeps their protection finalizers: added before
// CreateVolume, removed once no claim is being provisioned from the source
// any more (it was provisioned, or deleted). Removal is driven by claim and
// snapshot events through its own queue, so it also cleans up after a crash.
type sourceGuard struct {
	c     *Controller
	queue hub.Queue // keys "<Kind>/<namespace>/<name>" of sources to check

	// Snapshot side; nil when the driver cannot restore snapshots.
	snapshots       *hub.SnapshotAPI
	snapshotLister  snaplisters.VolumeSnapshotLister
	contentLister   snaplisters.VolumeSnapshotContentLister
	snapshotsSynced atomic.Bool
}

// newSourceGuard registers the handlers for the kinds the driver supports
// (CLONE_VOLUME, CREATE_DELETE_SNAPSHOT) or returns nil when it has neither;
// prepare then reports the missing capability on the claim.
func newSourceGuard(c *Controller, claims cache.SharedIndexInformer) (*sourceGuard, error) {
	caps := c.d.Caps
	canClone := caps.Has(csi.ControllerServiceCapability_RPC_CLONE_VOLUME)
	canRestore := caps.Has(csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT)
	if !canClone && !canRestore {
		return nil, nil
	}
	g := &sourceGuard{c: c, queue: c.d.NewQueue("claims") /* the sidecar's cloning-protection queue */}
	if canClone {
		c.dataSources[KindPVC] = cloneSource{g}
	}
	if canRestore {
		api, err := c.d.Snapshots()
		if err != nil {
			return nil, err
		}
		g.snapshots = api
		snaps := api.Informers.Snapshot().V1().VolumeSnapshots()
		g.snapshotLister = snaps.Lister()
		g.contentLister = api.Informers.Snapshot().V1().VolumeSnapshotContents().Lister()
		if _, err := snaps.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { g.snapshotChanged(nil, obj) },
			UpdateFunc: g.snapshotChanged,
		}); err != nil {
			return nil, err
		}
		c.dataSources[KindVolumeSnapshot] = restoreSource{g}
	}
	_, err := claims.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { g.claimChanged(nil, obj) },
		UpdateFunc: g.claimChanged,
		DeleteFunc: g.claimDeleted,
	})
	return g, err
}

// run waits for the snapshot API (when restores are possible) and processes
// source checks until ctx ends.
func (g *sourceGuard) run(ctx context.Context, workers int) {
	if g.snapshots != nil {
		go func() {
			if err := g.snapshots.WaitReady(ctx); err == nil {
				g.snapshotsSynced.Store(true)
			}
		}()
	}
	hub.RunWorkers(ctx, Name, "data source", g.queue, workers, g.sync)
}

func sourceKey(kind schema.GroupKind, ns, name string) string {
	return kind.Kind + "/" + ns + "/" + name
}

// claimSource is the source a claim is provisioned from, if it is one of the
// built-in kinds.
func claimSource(claim *v1.PersistentVolumeClaim) (kind schema.GroupKind, ns, name string, ok bool) {
	kind, name, ok = claimDataSource(claim)
	if !ok || !handledKind(kind) {
		return kind, "", "", false
	}
	ns = claim.Namespace
	if ref := claim.Spec.DataSourceRef; ref != nil && ref.Namespace != nil && *ref.Namespace != "" {
		ns = *ref.Namespace
	}
	return kind, ns, name, true
}

// sourceNamespace refuses cross-namespace sources: they need the alpha
// CrossNamespaceVolumeDataSource gate and ReferenceGrants, which csi-hub
// does not implement (the sidecar refuses them too while the gate is off).
func sourceNamespace(claim *v1.PersistentVolumeClaim) (string, error) {
	_, ns, _, _ := claimSource(claim)
	if ns != claim.Namespace {
		return "", fmt.Errorf("spec.dataSourceRef.namespace %q: data sources in another namespace are not supported", ns)
	}
	return ns, nil
}

// pending: the claim may still be provisioned (no volume bound to it yet).
func pending(claim *v1.PersistentVolumeClaim) bool {
	return claim.Spec.VolumeName == "" && claim.Status.Phase != v1.ClaimBound && claim.Status.Phase != v1.ClaimLost
}

// finishing: a CreateVolume of this claim may have started (see inFlight),
// so it must be allowed to complete with the same source even if the source
// is being deleted meanwhile: its finalizer is what still holds it.
func (g *sourceGuard) finishing(claim *v1.PersistentVolumeClaim) bool {
	key, _ := cache.MetaNamespaceKeyFunc(claim)
	return g.c.inFlight.isPending(key)
}
