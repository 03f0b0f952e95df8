// Package resizer is external-resizer's job inside csi-hub: it expands volumes
// whose PVC asks for more storage (ControllerExpandVolume, with recovery from
// failed or infeasible requests) and modifies volumes whose PVC names another
// VolumeAttributesClass (ControllerModifyVolume). It writes the same PVC and PV
// fields, conditions, annotations and events as the sidecar, so
// kube-controller-manager and kubelet work with it unchanged.
package resizer

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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
const Name = "resizer"

// Deps is what the resizer uses, built by internal/app (ResizerDeps) from the
// hub's shared parts; unit tests build it from fakes.
type Deps struct {
	// DriverConn: the driver's name, capabilities and controller service;
	// its Node answers NodeGetCapabilities: a driver without controller
	// EXPAND_VOLUME may expand on the node only.
	hub.DriverConn
	// Kube writes claims and volumes, reads secrets and asks discovery
	// whether VolumeAttributesClasses are served.
	Kube kubernetes.Interface
	PVCs coreinformers.PersistentVolumeClaimInformer
	PVs  coreinformers.PersistentVolumeInformer
	VACs storageinformers.VolumeAttributesClassInformer
	// PodClaims registers the process's slim Pod informer (hub.PodClaims);
	// called only with --handle-volume-inuse-error.
	PodClaims func() (cache.SharedIndexInformer, error)
	// Events carry external-resizer's source component, "external-resizer <driver>".
	Events record.EventRecorder
	// RetryStart and RetryMax are --retry-interval-start and -max.
	RetryStart, RetryMax time.Duration
	// Work: the step recorder, the queues and the resolved
	// --resizer-worker-threads / --resizer-timeout.
	hub.Work
}

// Controller runs the expansion and the modification sub-controllers, each
// with its own queue of PVC keys.
type Controller struct {
	d    Deps
	cfg  Config
	pvcs corelisters.PersistentVolumeClaimLister
	pvs  corelisters.PersistentVolumeLister
	vacs storagelisters.VolumeAttributesClassLister
	// csi is the driver's controller service (h.Conn's; a fake in unit tests).
	csi csi.ControllerClient

	expand *expander // nil when the driver cannot expand volumes
	modify *modifier // nil without MODIFY_VOLUME or VolumeAttributesClass API
}

// New registers the resizer's event handlers on the hub's shared PVC informer
// (and VolumeAttributesClass informer when the driver can modify volumes).
func New(ctx context.Context, d Deps, cfg Config) (*Controller, error) {
	c := &Controller{
		d: d, cfg: cfg,
		pvcs: d.PVCs.Lister(),
		pvs:  d.PVs.Lister(),
		csi:  d.CSI,
	}
	// The PV informer is read through its lister; it must be part of the
	// factory before the hub starts it.
	d.PVs.Informer()

	canExpand, nodeOnly, err := expansionSupport(ctx, d, c.d.Timeout)
	if err != nil {
		return nil, err
	}
	if canExpand {
		c.expand = newExpander(c, nodeOnly)
		// A node-only driver gets no ControllerExpandVolume call, so no
		// in-use error: no need to watch Pods.
		if cfg.HandleVolumeInUseError && !nodeOnly {
			if c.expand.users, err = watchClaimUsers(d, c.expand.q.Add); err != nil {
				return nil, err
			}
		}
	}
	if d.Caps.Has(csi.ControllerServiceCapability_RPC_MODIFY_VOLUME) {
		served, err := vacServed(d.Kube)
		switch {
		case err != nil:
			return nil, err
		case served:
			c.vacs = d.VACs.Lister()
			c.modify = newModifier(c)
		default:
			klog.FromContext(ctx).Info("Volume modification disabled: the API server does not serve storage.k8s.io/v1 volumeattributesclasses", "driver", d.Driver)
		}
	}
	if c.expand == nil && c.modify == nil {
		return nil, fmt.Errorf("resizer: driver %s can neither expand volumes (EXPAND_VOLUME) nor modify them (MODIFY_VOLUME)", d.Driver)
	}
	_, err = d.PVCs.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.pvcAdded,
		UpdateFunc: c.pvcUpdated,
		DeleteFunc: c.pvcDeleted,
	})
	if err != nil {
		return nil, err
	}
	if c.modify != nil {
		_, err = d.VACs.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: c.modify.classAdded,
		})
		if err != nil {
			return nil, err
		}
	}
	klog.FromContext(ctx).Info("Resizer configured", "driver", d.Driver, "expand", c.expand != nil, "nodeOnlyExpansion", nodeOnly,
		"modify", c.modify != nil, "workers", c.d.Workers, "timeout", c.d.Timeout)
	return c, nil
}

// expansionSupport asks what kind of expansion the driver does. Like the
// sidecar, a driver without controller EXPAND_VOLUME whose node service has
// EXPAND_VOLUME gets the "trivial resizer": the PV is resized without a CSI
// call and kubelet does the expansion.
func expansionSupport(ctx context.Context, d Deps, timeout time.Duration) (canExpand, nodeOnly bool, err error) {
	if d.Caps.Has(csi.ControllerServiceCapability_RPC_EXPAND_VOLUME) {
		return true, false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := d.Node.NodeGetCapabilities(ctx, &csi.NodeGetCapabilitiesRequest{})
	if err != nil {
		// A controller-only driver need not serve the node service at all.
		klog.V(2).InfoS("NodeGetCapabilities failed; no node-only expansion", "err", err)
		return false, false, nil
	}
	for _, cp := range resp.GetCapabilities() {
		if cp.GetRpc().GetType() == csi.NodeServiceCapability_RPC_EXPAND_VOLUME {
			return true, true, nil
		}
	}
	return false, false, nil
}

// vacServed reports whether storage.k8s.io/v1 serves VolumeAttributesClasses;
// starting an informer on a resource that is not served would keep the whole
// hub waiting for a cache that never syncs.
func vacServed(kube kubernetes.Interface) (bool, error) {
	list, err := kube.Discovery().ServerResourcesForGroupVersion("storage.k8s.io/v1")
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("resizer: asking the API server whether it serves volumeattributesclasses: %w", err)
	}
	for _, r := range list.APIResources {
		if r.Name == "volumeattributesclasses" {
			return true, nil
		}
	}
	return false, nil
}

// Name implements hub.Controller.
func (c *Controller) Name() string { return Name }

// Run processes both queues until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	logger := klog.FromContext(ctx).WithValues("controller", Name)
	logger.Info("Starting resizer", "driver", c.d.Driver)
	defer logger.Info("Resizer stopped", "driver", c.d.Driver)
	var wg sync.WaitGroup
	if c.expand != nil {
		wg.Go(func() { c.expand.run(ctx) })
	}
	if c.modify != nil {
		wg.Go(func() { c.modify.run(ctx) })
	}
	wg.Wait()
}

func (c *Controller) pvcAdded(obj any) {
	key, err := cache.MetaNamespaceKeyFunc(obj)
	if err != nil {
		return
	}
	if c.expand != nil {
		c.expand.q.Add(key)
	}
	if c.modify != nil {
		c.modify.q.Add(key)
	}
}

func (c *Controller) pvcUpdated(oldObj, newObj any) {
	oldPVC, ok1 := oldObj.(*v1.PersistentVolumeClaim)
	newPVC, ok2 := newObj.(*v1.PersistentVolumeClaim)
	if !ok1 || !ok2 {
		return
	}
	key, err := cache.MetaNamespaceKeyFunc(newPVC)
	if err != nil {
		return
	}
	if c.expand != nil && expansionRelevant(oldPVC, newPVC) {
		c.expand.q.Add(key)
	}
	if c.modify != nil && modificationRelevant(oldPVC, newPVC) {
		c.modify.q.Add(key)
	}
}

func (c *Controller) pvcDeleted(obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		return
	}
	if c.expand != nil {
		c.expand.forget(key)
	}
	if c.modify != nil {
		c.modify.forget(key)
	}
}

// expansionRelevant filters PVC updates as external-resizer does, so that
// unrelated edits do not start syncs: the request changed (either way:
// lowering it is how a user recovers), the resizer annotation changed, the
// capacity grew (kubelet finished), kubelet changed the resize status (e.g.
// the node failed), or it is a periodic resync.
func expansionRelevant(oldPVC, newPVC *v1.PersistentVolumeClaim) bool {
	oldReq, newReq := oldPVC.Spec.Resources.Requests[v1.ResourceStorage], newPVC.Spec.Resources.Requests[v1.ResourceStorage]
	oldCap, newCap := oldPVC.Status.Capacity[v1.ResourceStorage], newPVC.Status.Capacity[v1.ResourceStorage]
	return newReq.Cmp(oldReq) != 0 ||
		oldPVC.Annotations[annResizer] != newPVC.Annotations[annResizer] ||
		newPVC.ResourceVersion == oldPVC.ResourceVersion ||
		newCap.Cmp(oldCap) > 0 ||
		kubeletResizeStatus(oldPVC, newPVC) ||
		(oldPVC.Status.Phase != v1.ClaimBound && newPVC.Status.Phase == v1.ClaimBound)
}

// kubeletResizeStatus reports a resize status change into a state only
// kubelet writes. Unlike the sidecar, the resizer's own status writes do not
// count: they would re-run a failed sync at once instead of after its backoff.
func kubeletResizeStatus(oldPVC, newPVC *v1.PersistentVolumeClaim) bool {
	before, after := oldPVC.Status.AllocatedResourceStatuses[v1.ResourceStorage], newPVC.Status.AllocatedResourceStatuses[v1.ResourceStorage]
	return before != after && (after == v1.PersistentVolumeClaimNodeResizeInProgress || after == v1.PersistentVolumeClaimNodeResizeInfeasible)
}

// modificationRelevant: the requested class changed (including back to the
// current one or to none: that is how a user rolls back), the PVC became
// Bound, or it is a periodic resync.
func modificationRelevant(oldPVC, newPVC *v1.PersistentVolumeClaim) bool {
	return deref(oldPVC.Spec.VolumeAttributesClassName) != deref(newPVC.Spec.VolumeAttributesClassName) ||
		newPVC.ResourceVersion == oldPVC.ResourceVersion ||
		(oldPVC.Status.Phase != v1.ClaimBound && newPVC.Status.Phase == v1.ClaimBound)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// claimAndVolume returns the PVC of key and its bound PV of this driver, or
// nil, nil when there is nothing for the resizer to do.
func (c *Controller) claimAndVolume(ctx context.Context, key string) (*v1.PersistentVolumeClaim, *v1.PersistentVolume, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil, nil, nil // not a key we enqueued; nothing to retry
	}
	pvc, err := c.pvcs.PersistentVolumeClaims(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	if pvc.Spec.VolumeName == "" || pvc.Status.Phase != v1.ClaimBound {
		return nil, nil, nil
	}
	pv, err := c.pvs.Get(pvc.Spec.VolumeName)
	if apierrors.IsNotFound(err) {
		// The informer may not have seen the PV yet; retry with backoff.
		return nil, nil, fmt.Errorf("PV %s bound to PVC %s not found (yet)", pvc.Spec.VolumeName, key)
	}
	if err != nil {
		return nil, nil, err
	}
	if pv.Spec.CSI == nil || pv.Spec.CSI.Driver != c.d.Driver {
		return nil, nil, nil // another driver's volume (or not CSI)
	}
	if ref := pv.Spec.ClaimRef; ref == nil || ref.Namespace != pvc.Namespace || ref.UID != pvc.UID {
		klog.FromContext(ctx).V(4).Info("PV is not bound to this PVC", "PV", pv.Name, "PVC", key)
		return nil, nil, nil
	}
	return pvc, pv, nil
}

// writeFailed handles a failed API write of a sync. A Conflict (the informer
// had not caught up with an earlier write yet) becomes a quiet short requeue;
// anything else is a Warning event with reason on the PVC and a retry with
// backoff, so no failure goes unseen by the user.
func (c *Controller) writeFailed(pvc *v1.PersistentVolumeClaim, reason string, err error) error {
	if apierrors.IsConflict(err) { // also when wrapped with %w
		return hub.RequeueAfter(c.d.RetryStart)
	}
	c.events().Event(pvc, v1.EventTypeWarning, reason, err.Error())
	return err
}
