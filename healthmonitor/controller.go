// Package healthmonitor is external-health-monitor-controller's job inside
// csi-hub: it reads the health of this driver's volumes from the controller
// service and reports it on their PVCs with the sidecar's events
// (VolumeConditionAbnormal, and VolumeConditionNormal once it recovers).
package healthmonitor

import (
	"context"
	"fmt"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/internal/hub"
)

// Name is the controller's name in logs and --controllers.
const Name = "health-monitor"

// The sidecar's event reasons and recovery message (pkg/csi-handler/pv_checker.go,
// pkg/util/util.go).
const (
	reasonAbnormal  = "VolumeConditionAbnormal"
	reasonNormal    = "VolumeConditionNormal"
	recoveryMessage = "The Volume returns to the healthy state"
	uidIndex        = "involvedObject.uid"
)

// Deps is what the health monitor uses, built by internal/app
// (HealthMonitorDeps) from the hub's shared parts.
type Deps struct {
	// DriverConn: the driver's name, controller service and capabilities,
	// which decide how conditions are read (chooseMode; Node unused).
	hub.DriverConn
	// Kube and Resync serve the monitor's own narrow watch of
	// VolumeConditionAbnormal Warnings.
	Kube   kubernetes.Interface
	Resync time.Duration
	PVs    coreinformers.PersistentVolumeInformer
	PVCs   coreinformers.PersistentVolumeClaimInformer
	// Nodes and PodClaims (hub.PodClaims) are used with --enable-node-watcher only.
	Nodes     coreinformers.NodeInformer
	PodClaims func() (cache.SharedIndexInformer, error)
	// Events carry external-health-monitor's source component,
	// "csi-pv-monitor-controller-<driver>".
	Events record.EventRecorder
	// Tuning is the resolved --health-monitor-worker-threads / --health-monitor-timeout.
	Tuning hub.Tuning
}

// Controller checks volume conditions periodically.
type Controller struct {
	d       Deps
	cfg     Config
	mode    mode
	timeout time.Duration
	workers int
	pvs     corelisters.PersistentVolumeLister
	pvcs    corelisters.PersistentVolumeClaimLister
	// abnormal holds the unexpired VolumeConditionAbnormal Warnings: a
	// recovery event is sent only for a PVC that has one, as the sidecar
	// does with its Event informer. Here the watch is narrowed on the server
	// to that reason and type, instead of holding every Event of the cluster.
	events    informers.SharedInformerFactory
	abnormals cache.SharedIndexInformer
	nodes     *nodeWatcher // nil without --enable-node-watcher
	// recorder's events carry external-health-monitor's source component,
	// "csi-pv-monitor-controller-<driver>".
	recorder record.EventRecorder
}

// New registers the controller's informers.
func New(ctx context.Context, d Deps, cfg Config) (*Controller, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	m := chooseMode(d.Caps.Has)
	if m == modeNone {
		return nil, fmt.Errorf("health monitor: driver %s reports no volume health (GET_VOLUME_HEALTH, or VOLUME_CONDITION with LIST_VOLUMES or GET_VOLUME)", d.Driver)
	}
	c := &Controller{d: d, cfg: cfg, mode: m,
		timeout: d.Tuning.Timeout, workers: d.Tuning.Workers,
		pvs:      d.PVs.Lister(),
		pvcs:     d.PVCs.Lister(),
		recorder: d.Events,
	}
	d.PVs.Informer()
	d.PVCs.Informer()
	c.events = informers.NewSharedInformerFactoryWithOptions(d.Kube, d.Resync, informers.WithTransform(hub.DropManagedFields),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = "reason=" + reasonAbnormal + ",type=" + v1.EventTypeWarning
		}))
	c.abnormals = c.events.Core().V1().Events().Informer()
	err := c.abnormals.AddIndexers(cache.Indexers{uidIndex: func(obj any) ([]string, error) {
		if ev, ok := obj.(*v1.Event); ok {
			return []string{string(ev.InvolvedObject.UID)}, nil
		}
		return nil, nil
	}})
	if err != nil {
		return nil, err
	}
	if cfg.EnableNodeWatcher {
		if c.nodes, err = newNodeWatcher(c); err != nil {
			return nil, err
		}
	}
	klog.FromContext(ctx).Info("Health monitor configured", "controller", Name, "driver", d.Driver, "reads", m.String(),
		"interval", c.interval())
	return c, nil
}

// Name implements hub.Controller.
func (c *Controller) Name() string { return Name }

// interval: the sidecar reads lists every --list-volumes-interval and single
// volumes every --monitor-interval.
func (c *Controller) interval() time.Duration {
	if c.mode.lists() {
		return c.cfg.ListVolumesInterval
	}
	return c.cfg.MonitorInterval
}

// Run checks every interval until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	logger := klog.FromContext(ctx).WithValues("controller", Name, "driver", c.d.Driver)
	ctx = klog.NewContext(ctx, logger)
	c.events.Start(ctx.Done())
	defer c.events.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), c.abnormals.HasSynced) {
		return
	}
	logger.Info("Starting health monitor", "reads", c.mode.String(), "interval", c.interval(), "nodeWatcher", c.nodes != nil)
	if c.nodes != nil {
		go c.nodes.run(ctx)
	}
	wait.UntilWithContext(ctx, c.checkAll, c.interval())
	logger.Info("Health monitor stopped")
}

// checkAll reads the condition of every bound PV of this driver and reports it.
func (c *Controller) checkAll(ctx context.Context) {
	logger := klog.FromContext(ctx)
	pvs, err := c.pvs.List(labels.Everything())
	if err != nil {
		logger.Error(err, "Listing PVs")
		return
	}
	var mine []*v1.PersistentVolume
	for _, pv := range pvs {
		if pv.Spec.CSI != nil && pv.Spec.CSI.Driver == c.d.Driver && pv.Status.Phase == v1.VolumeBound &&
			pv.Spec.ClaimRef != nil && pv.DeletionTimestamp == nil && pv.Spec.CSI.VolumeHandle != "" {
			mine = append(mine, pv)
		}
	}
	if c.mode.lists() {
		cctx, cancel := context.WithTimeout(ctx, c.timeout)
		conds, err := listConditions(cctx, c.d.CSI, c.mode)
		cancel()
		if err != nil {
			logger.Error(err, "Reading volume conditions", "call", c.mode.String())
			return
		}
		for _, pv := range mine {
			if cond, ok := conds[pv.Spec.CSI.VolumeHandle]; ok {
				c.report(ctx, pv, cond)
			}
		}
		return
	}
	work := make(chan *v1.PersistentVolume)
	var wg sync.WaitGroup
	for range min(c.workers, len(mine)) {
		wg.Go(func() {
			for pv := range work {
				cctx, cancel := context.WithTimeout(ctx, c.timeout)
				cond, ok, err := getCondition(cctx, c.d.CSI, c.mode, pv.Spec.CSI.VolumeHandle)
				cancel()
				switch {
				case err != nil:
					logger.Error(err, "Reading volume condition", "call", c.mode.String(), "PV", pv.Name)
				case ok:
					c.report(ctx, pv, cond)
				}
			}
		})
	}
	for _, pv := range mine {
		work <- pv
	}
	close(work)
	wg.Wait()
}

// report emits the sidecar's event for one volume's condition on its PVC.
func (c *Controller) report(ctx context.Context, pv *v1.PersistentVolume, cond condition) {
	ref := pv.Spec.ClaimRef
	pvc, err := c.pvcs.PersistentVolumeClaims(ref.Namespace).Get(ref.Name)
	if err != nil {
		klog.FromContext(ctx).V(4).Info("PVC of a bound PV not found", "PV", pv.Name, "PVC", klog.KRef(ref.Namespace, ref.Name), "err", err)
		return
	}
	if cond.abnormal {
		c.recorder.Event(pvc, v1.EventTypeWarning, reasonAbnormal, cond.message)
		return
	}
	if evs, err := c.abnormals.GetIndexer().ByIndex(uidIndex, string(pvc.UID)); err == nil && len(evs) > 0 {
		c.recorder.Event(pvc, v1.EventTypeNormal, reasonNormal, recoveryMessage)
	}
}
