// Package snapshotter is the csi-snapshotter sidecar's job inside csi-hub: it
// turns VolumeSnapshotContents of the hub's driver into CreateSnapshot,
// ListSnapshots and DeleteSnapshot calls and reports the result in the
// content's status, for the cluster's snapshot-controller to propagate to the
// VolumeSnapshot. It uses the hub's one Kubernetes client budget, event
// recorder, step record and driver connection, and the shared snapshot API
// (hub.SnapshotAPI), which waits for the snapshot CRDs when they are absent.
package snapshotter

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	snaplisters "github.com/kubernetes-csi/external-snapshotter/client/v8/listers/volumesnapshot/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/internal/hub"
	"github.com/csi-hub/csi-hub/internal/steps"
)

// Name is the controller's name in logs, steps and --controllers.
const Name = "snapshotter"

// Controller is the snapshotter.
type Controller struct {
	deps
	cfg      Config
	workers  int
	timeout  time.Duration
	contents snaplisters.VolumeSnapshotContentLister
	classes  snaplisters.VolumeSnapshotClassLister
	queue    hub.Queue

	// polls counts readiness polls per content, to space them out like the
	// sidecar's rate-limited requeue does.
	pollMu sync.Mutex
	polls  map[string]int

	// group is the group snapshot path; nil when the driver has no
	// GroupController service.
	group *groupPath
}

// deps is what the controller uses from the hub; a struct so unit tests can
// supply fakes.
type deps struct {
	driver string
	csi    csi.ControllerClient
	// groupCSI is set when the driver serves the GroupController service.
	groupCSI      csi.GroupControllerClient
	listSupported bool
	kube          kubernetes.Interface
	api           *hub.SnapshotAPI
	events        record.EventRecorder
	steps         *steps.Recorder
	opts          hub.Options
	tuning        hub.Tuning // resolved workers and timeout
	newQueue      func(name string) hub.Queue
}

// New builds the snapshotter on the hub's shared parts. The driver must
// advertise CREATE_DELETE_SNAPSHOT.
func New(ctx context.Context, h *hub.Hub, cfg Config) (*Controller, error) {
	if !h.Conn.Caps.Has(csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT) {
		return nil, fmt.Errorf("driver %s does not advertise the CREATE_DELETE_SNAPSHOT controller capability; the snapshotter cannot run", h.Driver)
	}
	api, err := h.Snapshots()
	if err != nil {
		return nil, err
	}
	var groupCSI csi.GroupControllerClient
	if h.Conn.Caps.Plugin[csi.PluginCapability_Service_GROUP_CONTROLLER_SERVICE] {
		groupCSI = csi.NewGroupControllerClient(h.Conn.ClientConn)
	}
	return newController(deps{
		driver:        h.Driver,
		csi:           h.Conn.Controller(),
		groupCSI:      groupCSI,
		listSupported: h.Conn.Caps.Has(csi.ControllerServiceCapability_RPC_LIST_SNAPSHOTS),
		kube:          h.Kube,
		api:           api,
		events:        h.Recorder("csi-snapshotter " + h.Driver), // the sidecar's event source
		steps:         h.Steps,
		opts:          h.Opts,
		tuning:        h.Opts.Tune(hub.Tuning{Workers: cfg.WorkerThreads, Timeout: cfg.Timeout}, Defaults),
		newQueue:      h.NewQueue,
	}, cfg)
}

func newController(d deps, cfg Config) (*Controller, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.CRDPollInterval > 0 {
		d.api.PollInterval = cfg.CRDPollInterval
	}
	c := &Controller{
		deps:    d,
		cfg:     cfg,
		workers: d.tuning.Workers,
		timeout: d.tuning.Timeout,
		queue:   d.newQueue("csi-snapshotter-content"), // the sidecar's queue names, for workqueue_* metrics
		polls:   map[string]int{},
	}
	if d.groupCSI != nil {
		c.group = &groupPath{csi: d.groupCSI, queue: d.newQueue("csi-snapshotter-groupsnapshotcontent")}
	}
	contentInformer := d.api.Informers.Snapshot().V1().VolumeSnapshotContents()
	classInformer := d.api.Informers.Snapshot().V1().VolumeSnapshotClasses()
	c.contents, c.classes = contentInformer.Lister(), classInformer.Lister()
	// Every content is synced again each --resync-period, as the sidecar's informer resyncs.
	_, err := contentInformer.Informer().AddEventHandlerWithResyncPeriod(cache.ResourceEventHandlerFuncs{
		AddFunc: c.enqueue,
		UpdateFunc: func(oldObj, newObj any) {
			old, okOld := oldObj.(*snapv1.VolumeSnapshotContent)
			cur, okNew := newObj.(*snapv1.VolumeSnapshotContent)
			if okOld && okNew && !changeNeedsSync(old, cur) {
				return
			}
			c.enqueue(newObj)
		},
		DeleteFunc: c.enqueue,
	}, cfg.ResyncPeriod)
	if err != nil {
		return nil, err
	}
	// The class lister must be backed by a running informer.
	classInformer.Informer()
	return c, nil
}

// Name implements hub.Controller.
func (c *Controller) Name() string { return Name }

// Run waits for the snapshot CRDs (they may be installed later), then
// processes VolumeSnapshotContents until ctx ends; beside it, when the driver
// serves the GroupController service, VolumeGroupSnapshotContents once their
// CRDs are served.
func (c *Controller) Run(ctx context.Context) {
	if c.group != nil {
		// The group path waits for its own CRDs, which may come later or never.
		done := make(chan struct{})
		go func() { defer close(done); c.runGroups(ctx) }()
		defer func() { <-done }()
	}
	if err := c.api.WaitReady(ctx); err != nil {
		if ctx.Err() == nil {
			klog.ErrorS(err, "Snapshotter cannot start")
		}
		c.queue.ShutDown()
		return
	}
	klog.InfoS("Starting snapshotter", "driver", c.driver, "workers", c.workers, "timeout", c.timeout,
		"snapshotNamePrefix", c.cfg.SnapshotNamePrefix, "extraCreateMetadata", c.cfg.extraCreateMetadata())
	hub.RunWorkers(ctx, Name, "VolumeSnapshotContent", c.queue, c.workers, c.sync)
	klog.InfoS("Snapshotter stopped", "driver", c.driver)
}

func (c *Controller) enqueue(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	content, ok := obj.(*snapv1.VolumeSnapshotContent)
	if !ok || content.Spec.Driver != c.driver || !c.managedHere(content.Labels) {
		return
	}
	c.queue.Add(content.Name)
}

// LabelManagedBy is the label by which the snapshot-controller (with
// --enable-distributed-snapshotting) assigns a content to the node of its
// source volume; with --node-deployment only this node's contents are handled.
const LabelManagedBy = "snapshot.storage.kubernetes.io/managed-by"

func (c *Controller) managedHere(labels map[string]string) bool {
	return c.cfg.NodeName == "" || labels[LabelManagedBy] == c.cfg.NodeName
}

// snapClient is the snapshot.storage.k8s.io client.
func (c *Controller) snapClient() snapclient.Interface { return c.api.Client }
