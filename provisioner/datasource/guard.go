package datasource

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/container-storage-interface/spec/lib/go/csi"
	snaplisters "github.com/kubernetes-csi/external-snapshotter/client/v8/listers/volumesnapshot/v1"
	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/csi-hub/csi-hub/internal/csiconn"
	"github.com/csi-hub/csi-hub/internal/hub"
	"github.com/csi-hub/csi-hub/internal/steps"
)

// Finalizers external-provisioner puts on a data source while a claim is
// being provisioned from it, so the source cannot vanish under CreateVolume.
// (The snapshot-controller keeps its own snapshot.storage.kubernetes.io/
// volumesnapshot-as-source-protection beside ours; we never touch it.)
const (
	FinalizerCloneSource    = "provisioner.storage.kubernetes.io/cloning-protection"
	FinalizerSnapshotSource = "provisioner.storage.kubernetes.io/volumesnapshot-as-source-protection"
	// AnnAllowVolumeModeChange on a VolumeSnapshotContent lets a restore
	// change the volume mode (external-provisioner's
	// --prevent-volume-mode-conversion, on by default).
	AnnAllowVolumeModeChange = "snapshot.storage.kubernetes.io/allow-volume-mode-change"
)

// Claims is what the guard needs of the provisioner's claim handling.
type Claims interface {
	// IsPending: a CreateVolume of the claim (key namespace/name) may have
	// started and not been recorded as done.
	IsPending(key string) bool
	// PendingClaims are the deleted claims whose CreateVolume is being
	// finished.
	PendingClaims() []*v1.PersistentVolumeClaim
	// Retry provisions the claim (key namespace/name) again at once.
	Retry(key string)
}

// Deps is what the guard uses; the provisioner builds it from its own.
type Deps struct {
	Caps csiconn.Capabilities
	// Kube writes the claims' cloning-protection finalizer.
	Kube kubernetes.Interface
	PVCs coreinformers.PersistentVolumeClaimInformer
	PVs  coreinformers.PersistentVolumeInformer
	// Snapshots returns the shared snapshot API; called only when the driver
	// can restore snapshots.
	Snapshots func() (*hub.SnapshotAPI, error)
	Claims    Claims
	Steps     *steps.Recorder
	NewQueue  func(name string) hub.Queue
}

// Config is the guard's part of the provisioner's flags.
type Config struct {
	PreventVolumeModeConversion bool // --prevent-volume-mode-conversion
	// Controller names the workers in logs and metrics.
	Controller string
}

// Guard resolves the built-in data sources (clone of a PVC, restore of
// a VolumeSnapshot) and keeps their protection finalizers: added before
// CreateVolume, removed once no claim is being provisioned from the source
// any more (it was provisioned, or deleted). Removal is driven by claim and
// snapshot events through its own queue, so it also cleans up after a crash.
type Guard struct {
	d     Deps
	cfg   Config
	pvcs  corelisters.PersistentVolumeClaimLister
	pvs   corelisters.PersistentVolumeLister
	queue hub.Queue // keys "<Kind>/<namespace>/<name>" of sources to check

	clone, restore Source // nil for a kind the driver cannot provision from

	// Snapshot side; nil when the driver cannot restore snapshots.
	snapshots       *hub.SnapshotAPI
	snapshotLister  snaplisters.VolumeSnapshotLister
	contentLister   snaplisters.VolumeSnapshotContentLister
	snapshotsSynced atomic.Bool
}

// Source turns a claim's data source into CreateVolume's content source; the
// provisioner's DataSource is this interface.
type Source interface {
	// ContentSource validates the source (bound, ready, same driver, size...)
	// and returns what CreateVolume needs. An error is reported on the PVC and
	// the PVC is retried with backoff.
	ContentSource(ctx context.Context, claim *v1.PersistentVolumeClaim, sc *storagev1.StorageClass) (*csi.VolumeContentSource, error)
}

// New makes the guard for the kinds the driver supports (CLONE_VOLUME,
// CREATE_DELETE_SNAPSHOT), or returns nil when it has neither; the
// provisioner then reports the missing capability on the claim. It does no
// I/O: ctx is there as for every controller constructor.
func New(_ context.Context, d Deps, cfg Config) (*Guard, error) {
	canClone := d.Caps.Has(csi.ControllerServiceCapability_RPC_CLONE_VOLUME)
	canRestore := d.Caps.Has(csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT)
	if !canClone && !canRestore {
		return nil, nil
	}
	g := &Guard{d: d, cfg: cfg, pvcs: d.PVCs.Lister(), pvs: d.PVs.Lister(),
		queue: d.NewQueue("claims") /* the sidecar's cloning-protection queue */}
	if canClone {
		g.clone = cloneSource{g}
	}
	if canRestore {
		api, err := d.Snapshots()
		if err != nil {
			return nil, err
		}
		g.snapshots = api
		snaps := api.Informers.Snapshot().V1().VolumeSnapshots()
		g.snapshotLister = snaps.Lister()
		g.contentLister = api.Informers.Snapshot().V1().VolumeSnapshotContents().Lister()
		if _, err := snaps.Informer().AddEventHandler(hub.Handlers(g.snapshotChanged, nil)); err != nil {
			return nil, err
		}
		g.restore = restoreSource{g}
	}
	_, err := d.PVCs.Informer().AddEventHandler(hub.Handlers(g.claimChanged, g.claimDeleted))
	return g, err
}

// Sources are the built-in handlers by kind (only the kinds the driver
// supports).
func (g *Guard) Sources() map[schema.GroupKind]Source {
	out := map[schema.GroupKind]Source{}
	if g.clone != nil {
		out[KindPVC] = g.clone
	}
	if g.restore != nil {
		out[KindVolumeSnapshot] = g.restore
	}
	return out
}

// Run waits for the snapshot API (when restores are possible) and processes
// source checks with workers workers until ctx ends.
func (g *Guard) Run(ctx context.Context, workers int) {
	if g.snapshots != nil {
		go func() {
			if err := g.snapshots.WaitReady(ctx); err == nil {
				g.snapshotsSynced.Store(true)
			}
		}()
	}
	hub.RunWorkers(ctx, g.cfg.Controller, "data source", g.queue, workers, g.sync)
}

func sourceKey(kind schema.GroupKind, ns, name string) string {
	return kind.Kind + "/" + ns + "/" + name
}

// claimSource is the source a claim is provisioned from, if it is one of the
// built-in kinds.
func claimSource(claim *v1.PersistentVolumeClaim) (kind schema.GroupKind, ns, name string, ok bool) {
	kind, name, ok = Of(claim)
	if !ok || !Handled(kind) {
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
func (g *Guard) finishing(claim *v1.PersistentVolumeClaim) bool {
	key, _ := cache.MetaNamespaceKeyFunc(claim)
	return g.d.Claims.IsPending(key)
}
