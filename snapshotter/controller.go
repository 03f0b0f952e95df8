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
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	snaplisters "github.com/kubernetes-csi/external-snapshotter/client/v8/listers/volumesnapshot/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/internal/hub"
)

// Name is the controller's name in logs, steps and --controllers.
const Name = "snapshotter"

// Controller is the snapshotter.
type Controller struct {
	d        Deps
	cfg      Config
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

// Deps is what the snapshotter uses, built by internal/app (SnapshotterDeps)
// from the hub's shared parts; unit tests build it from fakes.
type Deps struct {
	// DriverConn: the driver's name, controller service and capabilities
	// (LIST_SNAPSHOTS: whether a snapshot can be looked up by its handle;
	// Node unused).
	hub.DriverConn
	// GroupCSI is set when the driver serves the GroupController service.
	GroupCSI csi.GroupControllerClient
	Kube     kubernetes.Interface
	// Snapshots is the shared snapshot API: client, informers, CRD wait.
	Snapshots *hub.SnapshotAPI
	// Events carry csi-snapshotter's source component, "csi-snapshotter <driver>".
	Events record.EventRecorder
	// RetryStart and RetryMax are --retry-interval-start and -max, which
	// space the readiness polls.
	RetryStart, RetryMax time.Duration
	// Work: the step recorder, the queues and the resolved
	// --snapshotter-worker-threads / --snapshotter-timeout.
	hub.Work
}

// New builds the snapshotter and registers its informer handlers. The driver
// must advertise CREATE_DELETE_SNAPSHOT (internal/app checks it).
func New(_ context.Context, d Deps, cfg Config) (*Controller, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.CRDPollInterval > 0 {
		d.Snapshots.PollInterval = cfg.CRDPollInterval
	}
	c := &Controller{
		d:     d,
		cfg:   cfg,
		queue: d.NewQueue("csi-snapshotter-content"), // the sidecar's queue names, for workqueue_* metrics
		polls: map[string]int{},
	}
	if d.GroupCSI != nil {
		c.group = &groupPath{csi: d.GroupCSI, queue: d.NewQueue("csi-snapshotter-groupsnapshotcontent")}
	}
	contentInformer := d.Snapshots.Informers.Snapshot().V1().VolumeSnapshotContents()
	classInformer := d.Snapshots.Informers.Snapshot().V1().VolumeSnapshotClasses()
	c.contents, c.classes = contentInformer.Lister(), classInformer.Lister()
	// Every content is synced again each --resync-period, as the sidecar's informer resyncs.
	_, err := contentInformer.Informer().AddEventHandlerWithResyncPeriod(contentHandler(c.enqueue, changeNeedsSync), cfg.ResyncPeriod)
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
	if err := c.d.Snapshots.WaitReady(ctx); err != nil {
		if ctx.Err() == nil {
			klog.ErrorS(err, "Snapshotter cannot start")
		}
		c.queue.ShutDown()
		return
	}
	klog.InfoS("Starting snapshotter", "driver", c.d.Driver, "workers", c.d.Workers, "timeout", c.d.Timeout,
		"snapshotNamePrefix", c.cfg.SnapshotNamePrefix, "extraCreateMetadata", c.cfg.extraCreateMetadata())
	hub.RunWorkers(ctx, Name, "VolumeSnapshotContent", c.queue, c.d.Workers, c.sync)
	klog.InfoS("Snapshotter stopped", "driver", c.d.Driver)
}

func (c *Controller) enqueue(obj any) {
	enqueueContent(c, c.queue, obj, func(content *snapv1.VolumeSnapshotContent) string { return content.Spec.Driver })
}

// enqueueContent adds obj, a content of type T or its tombstone, to q when it
// is of this driver (its driver) and handled on this node.
func enqueueContent[T metav1.Object](c *Controller, q hub.Queue, obj any, driver func(T) string) {
	content, ok := hub.Object[T](obj)
	if ok && driver(content) == c.d.Driver && c.managedHere(content.GetLabels()) {
		q.Add(content.GetName())
	}
}

// contentHandler sends added, deleted and changed contents of type T to
// enqueue, but not changes that are only the controller's own writes
// (needsSync false), which must not bypass the queue's backoff.
func contentHandler[T any](enqueue func(any), needsSync func(old, cur T) bool) cache.ResourceEventHandlerFuncs {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue,
		UpdateFunc: func(oldObj, newObj any) {
			old, okOld := oldObj.(T)
			cur, okNew := newObj.(T)
			if okOld && okNew && !needsSync(old, cur) {
				return
			}
			enqueue(newObj)
		},
		DeleteFunc: enqueue,
	}
}

// LabelManagedBy is the label by which the snapshot-controller (with
// --enable-distributed-snapshotting) assigns a content to the node of its
// source volume; with --node-deployment only this node's contents are handled.
const LabelManagedBy = "snapshot.storage.kubernetes.io/managed-by"

func (c *Controller) managedHere(labels map[string]string) bool {
	return c.cfg.NodeName == "" || labels[LabelManagedBy] == c.cfg.NodeName
}

// snapClient is the snapshot.storage.k8s.io client.
func (c *Controller) snapClient() snapclient.Interface { return c.d.Snapshots.Client }
