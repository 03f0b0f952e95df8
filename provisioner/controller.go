package provisioner

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/prometheus/client_golang/prometheus"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"
	coreinformers "k8s.io/client-go/informers/core/v1"
	storageinformers "k8s.io/client-go/informers/storage/v1"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/internal/hub"
	"github.com/csi-hub/csi-hub/internal/migration"
	"github.com/csi-hub/csi-hub/provisioner/capacity"
	"github.com/csi-hub/csi-hub/provisioner/datasource"
)

// Name is the controller's name in logs, steps and --controllers.
const Name = "provisioner"

// Deps is what the provisioner uses, built by internal/app (ProvisionerDeps)
// from the hub's shared parts; unit tests build it from fakes.
type Deps struct {
	// DriverConn: the driver's name, capabilities and controller service;
	// its Node answers NodeGetInfo with --node-deployment.
	hub.DriverConn
	Kube kubernetes.Interface
	// RestConfig makes the CSIStorageCapacity client with its own budget
	// (--kube-api-capacity-qps/-burst).
	RestConfig *rest.Config
	// Metrics registers the sidecar's metrics; nil: none.
	Metrics *prometheus.Registry
	// The shared informers the provisioner reads (Nodes, CSINodes and
	// CSIStorageCapacities only when topology or capacity calls for them).
	PVCs       coreinformers.PersistentVolumeClaimInformer
	PVs        coreinformers.PersistentVolumeInformer
	Classes    storageinformers.StorageClassInformer
	Nodes      coreinformers.NodeInformer
	CSINodes   storageinformers.CSINodeInformer
	Capacities storageinformers.CSIStorageCapacityInformer
	// VAsByPV registers the VolumeAttachment informer indexed by PV
	// (hub.AttachmentsByPV); called only for a driver that attaches.
	VAsByPV func() (cache.SharedIndexInformer, error)
	// Snapshots returns the shared snapshot API; called only for a driver
	// that can restore snapshots.
	Snapshots func() (*hub.SnapshotAPI, error)
	// Recorder returns an event recorder with a source component: the
	// provisioner's is "<driver>_<host>_<uuid>" (eventComponent).
	Recorder func(component string) record.EventRecorder
	// RetryMax is --retry-interval-max.
	RetryMax time.Duration
	// Work: the step recorder, the queues and the resolved
	// --provisioner-worker-threads / --provisioner-timeout.
	hub.Work
}

// Controller provisions and deletes volumes for PVCs of the driver.
type Controller struct {
	d        Deps
	cfg      Config
	identity string

	topology              bool
	singleNodeMultiWriter bool
	checkAttachments      bool
	// migrateFrom is the in-tree plugin the driver replaces (CSI migration,
	// see migration.go), "" for a driver csi-translation-lib does not know.
	migrateFrom string

	claims  hub.Queue // keys "namespace/name"
	volumes hub.Queue // keys PV names

	// events carry external-provisioner's source component
	// (sig-storage-lib-external-provisioner: "<driver>_<host>_<uuid>").
	events record.EventRecorder
	stats  *stats
	slow   *slowRetry

	pvcLister     corelisters.PersistentVolumeClaimLister
	pvLister      corelisters.PersistentVolumeLister
	scLister      storagelisters.StorageClassLister
	csiNodeLister storagelisters.CSINodeLister
	nodeLister    corelisters.NodeLister
	vas           cache.SharedIndexInformer // VolumeAttachments indexed by PV (hub.PVIndex)
	dataSources   map[schema.GroupKind]DataSource
	sources       *datasource.Guard   // clone/restore and their finalizers; nil if the driver has neither
	capacity      *capacity.Publisher // nil without --enable-capacity
	node          *nodeDeployment     // nil without --node-deployment

	// inFlight is what this process keeps in memory between syncs, per
	// claim and per PV (inflight.go).
	inFlight inFlight
}

// failureEventInterval is how often an unchanged failure is reported again on
// one claim; retries in between only log. This bounds the event writes of a
// broken claim whatever its retry rate.
const failureEventInterval = time.Minute

// forget drops per-claim memory once the claim is provisioned or gone.
func (c *Controller) forget(uid types.UID) {
	c.inFlight.forget(uid)
	c.slow.forget(string(uid))
	c.node.forget(uid)
}

// New builds the provisioner on the hub's shared informers and connection.
func New(ctx context.Context, d Deps, cfg Config) (*Controller, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if !d.Caps.ControllerService() || !d.Caps.Has(csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME) {
		return nil, fmt.Errorf("driver %s does not support dynamic provisioning (needs CONTROLLER_SERVICE and CREATE_DELETE_VOLUME)", d.Driver)
	}
	c := &Controller{
		d:        d,
		cfg:      cfg,
		identity: newIdentity(d.Driver),

		topology:              d.Caps.Topology(),
		singleNodeMultiWriter: d.Caps.Has(csi.ControllerServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER),
		checkAttachments:      d.Caps.Has(csi.ControllerServiceCapability_RPC_PUBLISH_UNPUBLISH_VOLUME),
		migrateFrom:           migration.InTreePlugin(d.Driver),

		// The queue names of the sidecar's library, for workqueue_* metrics.
		claims:      d.NewQueue("claims"),
		volumes:     d.NewQueue("volumes"),
		dataSources: map[schema.GroupKind]DataSource{},
		events:      d.Recorder(eventComponent(d.Driver)),
		slow:        newSlowRetry(d.RetryMax),
	}
	var statsErr error
	if c.stats, statsErr = newStats(d.Metrics); statsErr != nil {
		return nil, statsErr
	}

	pvcs, pvs := d.PVCs, d.PVs
	c.pvcLister, c.pvLister = pvcs.Lister(), pvs.Lister()
	c.scLister = d.Classes.Lister()
	// Nodes and CSINodes are watched only when the driver has topology, and
	// VolumeAttachments only when it attaches: no watch the job does not need.
	// With --node-deployment the node's own Node and CSINode are static.
	if c.topology && !cfg.NodeDeployment {
		c.csiNodeLister = d.CSINodes.Lister()
		c.nodeLister = d.Nodes.Lister()
	}
	if c.checkAttachments {
		vas, err := d.VAsByPV()
		if err != nil {
			return nil, err
		}
		c.vas = vas
	}

	var err error
	if _, err = pvcs.Informer().AddEventHandler(hub.Handlers(hub.Latest(c.claimChanged), c.claimDeleted)); err != nil {
		return nil, err
	}
	if _, err = pvs.Informer().AddEventHandler(hub.Handlers(hub.Latest(c.volumeChanged), c.volumeDeleted)); err != nil {
		return nil, err
	}
	if cfg.NodeDeployment {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if c.node, err = newNodeDeployment(cctx, c); err != nil {
			return nil, err
		}
		c.identity += "-" + c.node.name // as the sidecar's identity in node deployment
	}
	if c.sources, err = datasource.New(ctx, datasource.Deps{Caps: d.Caps, Kube: d.Kube, PVCs: pvcs, PVs: pvs,
		Snapshots: d.Snapshots, Claims: claimsView{c}, Steps: d.Steps, NewQueue: d.NewQueue},
		datasource.Config{PreventVolumeModeConversion: cfg.PreventVolumeModeConversion, Controller: Name}); err != nil {
		return nil, err
	}
	if c.sources != nil {
		for kind, src := range c.sources.Sources() {
			c.dataSources[kind] = src
		}
	}
	if cfg.EnableCapacity {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if c.capacity, err = newCapacity(cctx, c); err != nil {
			return nil, err
		}
	}
	klog.FromContext(ctx).Info("Provisioner configured", "driver", d.Driver, "identity", c.identity, "workers", c.d.Workers,
		"timeout", c.d.Timeout, "topology", c.topology, "volumeNamePrefix", cfg.VolumeNamePrefix,
		"extraCreateMetadata", cfg.ExtraCreateMetadata, "migrateFrom", c.migrateFrom)
	return c, nil
}

// eventComponent is the source component of the sidecar's events: the
// library names it "<provisioner>_<hostname>_<uuid>".
func eventComponent(driver string) string {
	host, _ := os.Hostname()
	return driver + "_" + host + "_" + string(uuid.NewUUID())
}

// newIdentity is the sidecar's provisioner identity, "<ms timestamp>-<random>-<driver>":
// one per process, written into every PV's volumeAttributes.
func newIdentity(driver string) string {
	return fmt.Sprintf("%d-%d-%s", time.Now().UnixMilli(), rand.IntN(10000), driver)
}

// Identity is the value this process writes to storage.kubernetes.io/csiProvisionerIdentity.
func (c *Controller) Identity() string { return c.identity }

// Name implements hub.Controller.
func (c *Controller) Name() string { return Name }

// Run processes claims and volumes until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	logger := klog.FromContext(ctx).WithValues("controller", Name)
	logger.Info("Starting provisioner", "driver", c.d.Driver, "workers", c.d.Workers)
	go c.slow.run(ctx)
	var wg sync.WaitGroup
	if c.capacity != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.capacity.Run(ctx)
		}()
	}
	if c.sources != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.sources.Run(ctx, max(1, c.cfg.CloningProtectionThreads))
		}()
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		hub.RunWorkers(ctx, Name, "PersistentVolumeClaim", c.claims, c.d.Workers, c.syncClaim)
	}()
	go func() {
		defer wg.Done()
		hub.RunWorkers(ctx, Name, "PersistentVolume", c.volumes, c.d.Workers, c.syncVolume)
	}()
	wg.Wait()
	logger.Info("Provisioner stopped", "driver", c.d.Driver)
}

func (c *Controller) claimChanged(obj any) {
	claim, ok := obj.(*v1.PersistentVolumeClaim)
	if !ok {
		return
	}
	key, err := cache.MetaNamespaceKeyFunc(claim)
	if err != nil {
		return
	}
	if claim.Spec.VolumeName != "" {
		// Bound (or being bound): nothing to provision; forget per-claim memory.
		c.forget(claim.UID)
		if !c.inFlight.isPending(key) {
			return
		}
	}
	c.claims.Add(key)
}

func (c *Controller) claimDeleted(obj any) {
	claim, ok := hub.Object[*v1.PersistentVolumeClaim](obj)
	if !ok {
		return
	}
	c.forget(claim.UID)
	key, err := cache.MetaNamespaceKeyFunc(claim)
	if err != nil {
		return
	}
	if c.inFlight.isPending(key) {
		c.claims.Add(key) // finish what CreateVolume may have started
	}
}

// ownsVolume says whether the PV is this driver's to finalize and delete:
// provisioned by it (or by the in-tree plugin it replaces), or a statically
// created CSI PV of the driver, or an in-tree PV migrated to it.
func (c *Controller) ownsVolume(pv *v1.PersistentVolume) bool {
	if by, ok := pv.Annotations[annDynamicallyProvisioned]; ok {
		return c.knownProvisioner(by) || pv.Annotations[annMigratedTo] == c.d.Driver
	}
	if pv.Spec.CSI != nil {
		return pv.Spec.CSI.Driver == c.d.Driver
	}
	return pv.Annotations[annMigratedTo] == c.d.Driver
}

func (c *Controller) volumeChanged(obj any) {
	pv, ok := obj.(*v1.PersistentVolume)
	if !ok {
		return
	}
	c.inFlight.seenPV(pv.Name) // the informer has it now
	if c.ownsVolume(pv) && c.node.deletesHere(pv) {
		c.volumes.Add(pv.Name)
	}
}

func (c *Controller) volumeDeleted(obj any) {
	if pv, ok := hub.Object[*v1.PersistentVolume](obj); ok {
		c.inFlight.goneVolume(pv.Name, pv.UID)
	}
}
