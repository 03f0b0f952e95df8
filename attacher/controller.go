package attacher

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/container-storage-interface/spec/lib/go/csi"
	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	coreinformers "k8s.io/client-go/informers/core/v1"
	storageinformers "k8s.io/client-go/informers/storage/v1"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/internal/hub"
)

// Name is the controller's name in logs, steps and --controllers.
const Name = "attacher"

// Deps is what the attacher uses, built by internal/app (AttacherDeps) from
// the hub's shared parts; unit tests build it from fakes.
type Deps struct {
	// DriverConn: the driver's name, controller service and capabilities,
	// which decide the attacher's mode (Node unused).
	hub.DriverConn
	Kube kubernetes.Interface
	// VAs, PVs and CSINodes are the shared informers the attacher reads.
	VAs      storageinformers.VolumeAttachmentInformer
	PVs      coreinformers.PersistentVolumeInformer
	CSINodes storageinformers.CSINodeInformer
	// VAsByPV is the VolumeAttachment informer indexed by PV (hub.PVIndex).
	VAsByPV cache.SharedIndexInformer
	// Events carry external-attacher's source component, "csi-attacher <driver>".
	Events record.EventRecorder
	// Work: the step recorder, the queues and the resolved
	// --attacher-worker-threads / --attacher-timeout.
	hub.Work
}

// Controller attaches and detaches the driver's volumes.
type Controller struct {
	d         Deps
	cfg       Config
	finalizer string
	// publish: the driver has PUBLISH_UNPUBLISH_VOLUME. Without it every
	// VolumeAttachment is marked attached with no CSI call ("trivial" mode).
	publish       bool
	readOnly      bool // PUBLISH_READONLY: the readonly flag may be passed on
	multiWriter   bool // SINGLE_NODE_MULTI_WRITER access modes
	reconcile     bool // LIST_VOLUMES + LIST_VOLUMES_PUBLISHED_NODES
	csi           csi.ControllerClient
	vaLister      storagelisters.VolumeAttachmentLister
	vaByPV        cache.SharedIndexInformer // VolumeAttachments indexed by PV (hub.PVIndex)
	pvLister      corelisters.PersistentVolumeLister
	csiNodeLister storagelisters.CSINodeLister
	vaQueue       hub.Queue
	pvQueue       hub.Queue
	stale         *staleGuard // VolumeAttachments
	pvStale       *staleGuard // PersistentVolumes

	forceMu sync.Mutex
	force   map[string]bool // VolumeAttachments the reconciler found out of step
}

// New builds the attacher and registers its informer handlers. The driver's
// capabilities decide its mode, as in the external-attacher.
func New(ctx context.Context, d Deps, cfg Config) (*Controller, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	caps := d.Caps
	c := &Controller{
		d:         d,
		cfg:       cfg,
		finalizer: FinalizerName(d.Driver),
		publish: caps.ControllerService() &&
			caps.Has(csi.ControllerServiceCapability_RPC_PUBLISH_UNPUBLISH_VOLUME),
		readOnly:    caps.Has(csi.ControllerServiceCapability_RPC_PUBLISH_READONLY),
		multiWriter: caps.Has(csi.ControllerServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER),
		csi:         d.CSI,
		vaQueue:     d.NewQueue("csi-attacher-va"),
		pvQueue:     d.NewQueue("csi-attacher-pv"),
		stale:       newStaleGuard(),
		pvStale:     newStaleGuard(),
		force:       map[string]bool{},
	}
	c.reconcile = c.publish && caps.Has(csi.ControllerServiceCapability_RPC_LIST_VOLUMES) &&
		caps.Has(csi.ControllerServiceCapability_RPC_LIST_VOLUMES_PUBLISHED_NODES)

	vas, pvs, csiNodes := d.VAs, d.PVs, d.CSINodes
	c.vaLister, c.pvLister, c.csiNodeLister = vas.Lister(), pvs.Lister(), csiNodes.Lister()
	csiNodes.Informer() // registered so the factory starts it
	c.vaByPV = d.VAsByPV
	if _, err := vas.Informer().AddEventHandler(hub.Handlers(c.vaChanged, c.vaDeleted)); err != nil {
		return nil, fmt.Errorf("watching VolumeAttachments: %w", err)
	}
	if _, err := pvs.Informer().AddEventHandler(hub.Handlers(c.pvChanged, c.pvDeleted)); err != nil {
		return nil, fmt.Errorf("watching PersistentVolumes: %w", err)
	}
	return c, nil
}

// Name implements hub.Controller.
func (c *Controller) Name() string { return Name }

// Mode says how VolumeAttachments are handled: "publish" (ControllerPublish
// calls) or "trivial" (marked attached with no call).
func (c *Controller) Mode() string {
	if c.publish {
		return "publish"
	}
	return "trivial"
}

// Run processes both queues and, when the driver can list publications, runs
// the reconciler, until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	logger := klog.FromContext(ctx).WithValues("controller", Name)
	logger.Info("Starting attacher", "driver", c.d.Driver, "mode", c.Mode(), "workers", c.d.Workers,
		"timeout", c.d.Timeout, "reconciler", c.reconcile, "reconcileSync", c.cfg.ReconcileSync)
	var wg sync.WaitGroup
	wg.Go(func() { hub.RunWorkers(ctx, Name, "VolumeAttachment", c.vaQueue, c.d.Workers, c.syncVA) })
	wg.Go(func() { hub.RunWorkers(ctx, Name, "PersistentVolume", c.pvQueue, c.d.Workers, c.syncPV) })
	if c.reconcile {
		wg.Go(func() { c.runReconciler(ctx) })
	}
	wg.Wait()
	logger.Info("Attacher stopped", "driver", c.d.Driver)
}

func (c *Controller) vaChanged(oldObj, newObj any) {
	va, ok := newObj.(*storagev1.VolumeAttachment)
	if !ok || va.Spec.Attacher != c.d.Driver {
		return
	}
	if old, ok := oldObj.(*storagev1.VolumeAttachment); ok && !worthSyncing(old, va) {
		return
	}
	c.vaQueue.Add(va.Name)
}

func (c *Controller) vaDeleted(obj any) {
	va, ok := hub.Object[*storagev1.VolumeAttachment](obj)
	if !ok || va.Spec.Attacher != c.d.Driver {
		return
	}
	c.stale.forget(va.Name)
	c.takeForce(va.Name)
	// The PV may now be free of attachments: let it lose our finalizer.
	if pv := va.Spec.Source.PersistentVolumeName; pv != nil {
		c.pvQueue.Add(*pv)
	}
}

// pvChanged queues only PVs the PV sync can act on: being deleted and still
// carrying our finalizer.
func (c *Controller) pvChanged(_, newObj any) {
	pv, ok := newObj.(*v1.PersistentVolume)
	if ok && (pv.DeletionTimestamp != nil || c.migrationRolledBack(pv)) && hasFinalizer(pv.Finalizers, c.finalizer) {
		c.pvQueue.Add(pv.Name)
	}
}

func (c *Controller) pvDeleted(obj any) {
	if pv, ok := hub.Object[*v1.PersistentVolume](obj); ok {
		c.pvStale.forget(pv.Name)
	}
}

// worthSyncing filters out updates that only changed attachError/detachError:
// those are our own error reports, and syncing on them would retry at once
// instead of after the backoff. Periodic resyncs (same resourceVersion) pass.
func worthSyncing(old, cur *storagev1.VolumeAttachment) bool {
	if old.ResourceVersion == cur.ResourceVersion {
		return true
	}
	if old.Status.AttachError == nil && old.Status.DetachError == nil &&
		cur.Status.AttachError == nil && cur.Status.DetachError == nil {
		return true
	}
	sanitized := cur.DeepCopy()
	sanitized.ResourceVersion = old.ResourceVersion
	sanitized.ManagedFields = old.ManagedFields
	sanitized.Status.AttachError = old.Status.AttachError
	sanitized.Status.DetachError = old.Status.DetachError
	return !equality.Semantic.DeepEqual(old, sanitized)
}

func hasFinalizer(finalizers []string, name string) bool { return slices.Contains(finalizers, name) }

// setForce marks name to be attached/detached again even though its status
// says it already is: the reconciler found the driver disagrees.
func (c *Controller) setForce(name string) {
	c.forceMu.Lock()
	defer c.forceMu.Unlock()
	c.force[name] = true
}

func (c *Controller) takeForce(name string) bool {
	c.forceMu.Lock()
	defer c.forceMu.Unlock()
	f := c.force[name]
	delete(c.force, name)
	return f
}
