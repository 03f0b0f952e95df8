package attacher

import (
	"context"
	"fmt"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/internal/migration"
	"github.com/csi-hub/csi-hub/internal/steps"
)

// runReconciler compares VolumeAttachments with what the driver reports
// every --reconcile-sync, so a publication the backend lost (or one that
// survived a detach) is noticed even though no Kubernetes object changed.
func (c *Controller) runReconciler(ctx context.Context) {
	ctx = steps.WithObject(ctx, Name, "VolumeAttachments")
	ctx = klog.NewContext(ctx, klog.FromContext(ctx).WithValues("controller", Name, "object", "VolumeAttachments"))
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		if err := c.reconcileOnce(ctx); err != nil {
			klog.FromContext(ctx).Error(err, "Reconciling VolumeAttachments with the driver failed; trying again later", "interval", c.cfg.ReconcileSync)
		}
	}, c.cfg.ReconcileSync)
}

// reconcileOnce lists the driver's publications and queues, with a forced
// sync, every VolumeAttachment whose status disagrees: the ordinary sync then
// publishes (or unpublishes) again. Nothing is written here, so the
// reconciler never races the workers over an object.
func (c *Controller) reconcileOnce(ctx context.Context) error {
	published, err := c.listPublished(ctx)
	if err != nil {
		return err
	}
	vas, err := c.vaLister.List(labels.Everything())
	if err != nil {
		return err
	}
	for _, va := range vas {
		if va.Spec.Attacher != c.d.Driver {
			continue
		}
		nodeID, err := c.nodeID(va.Spec.NodeName, va)
		if err != nil {
			klog.FromContext(ctx).V(4).Info("Reconciler skips VolumeAttachment", "VolumeAttachment", va.Name, "err", err)
			continue
		}
		src, _, err := sourceOf(ctx, va, c.pvLister.Get)
		if err != nil {
			klog.FromContext(ctx).V(4).Info("Reconciler skips VolumeAttachment", "VolumeAttachment", va.Name, "err", err)
			continue
		}
		handle := src.csi().VolumeHandle
		if src.migrated && migration.InTreePlugin(c.d.Driver) != "" {
			// The translation may leave parts of the handle to the node
			// (GCE PD: project and zone), as external-attacher repairs them.
			if handle, err = migration.RepairVolumeHandle(c.d.Driver, handle, nodeID); err != nil {
				klog.FromContext(ctx).V(4).Info("Reconciler skips VolumeAttachment", "VolumeAttachment", va.Name, "err", err)
				continue
			}
		}
		found := publishedTo(published, handle, nodeID)
		if found == va.Status.Attached {
			continue
		}
		klog.FromContext(ctx).Info("VolumeAttachment status disagrees with the driver; syncing it again",
			"VolumeAttachment", va.Name, "volume", handle, "node", nodeID,
			"statusAttached", va.Status.Attached, "driverPublished", found)
		c.setForce(va.Name)
		c.vaQueue.Add(va.Name)
	}
	return nil
}

// listPublished pages through ListVolumes: volume ID -> published node IDs.
func (c *Controller) listPublished(ctx context.Context) (map[string][]string, error) {
	cctx, cancel := context.WithTimeout(ctx, c.d.Timeout)
	defer cancel()
	published := map[string][]string{}
	token := ""
	for {
		resp, err := c.csi.ListVolumes(cctx, &csi.ListVolumesRequest{
			StartingToken: token,
			MaxEntries:    int32(c.cfg.MaxEntries),
		})
		if err != nil {
			return nil, fmt.Errorf("ListVolumes: %w", err)
		}
		for _, e := range resp.GetEntries() {
			published[e.GetVolume().GetVolumeId()] = e.GetStatus().GetPublishedNodeIds()
		}
		if token = resp.GetNextToken(); token == "" {
			return published, nil
		}
	}
}
