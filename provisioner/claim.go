package provisioner

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/internal/hub"
	"github.com/csi-hub/csi-hub/provisioner/datasource"
)

// syncClaim provisions a volume for the PVC under key if it is this driver's
// to provision and has none yet. Idempotent: the volume name comes from the
// PVC UID, and an existing PV for the claim ends the work.
func (c *Controller) syncClaim(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil // malformed key: nothing to retry
	}
	claim, err := c.pvcLister.PersistentVolumeClaims(ns).Get(name)
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	if pending, busy := c.inFlight.pendingClaim(key); busy {
		if claim == nil || claim.UID != pending.UID {
			// The PVC went away while its volume may exist in the backend:
			// finish with the last known claim so a PV records the volume;
			// kube-controller-manager marks it Released and it gets deleted.
			klog.FromContext(ctx).V(2).Info("PVC deleted while its volume was being created; finishing so the volume is not leaked",
				"PVC", klog.KObj(pending), "uid", pending.UID)
			if err := c.provision(ctx, key, pending); err != nil {
				return err
			}
			if claim != nil {
				c.claims.Add(key) // now the new PVC of the same name
			}
			return nil
		}
	}
	if claim == nil {
		return nil
	}
	return c.provision(ctx, key, claim)
}

// storageClassFor returns the claim's StorageClass when the claim is this
// driver's to provision now, or nil.
func (c *Controller) storageClassFor(claim *v1.PersistentVolumeClaim) (*storagev1.StorageClass, error) {
	if claim.Spec.VolumeName != "" {
		return nil, nil
	}
	by, ok := claim.Annotations[annStorageProvisioner]
	if !ok {
		by = claim.Annotations[annBetaStorageProvisioner]
	}
	if by != c.d.Driver && claim.Annotations[annMigratedTo] != c.d.Driver {
		return nil, nil
	}
	className := datasource.ClaimClass(claim)
	sc, err := c.scLister.Get(className)
	if err != nil {
		// kube-controller-manager already reports a missing class on the PVC.
		return nil, fmt.Errorf("StorageClass %q of PVC %s/%s: %w", className, claim.Namespace, claim.Name, err)
	}
	if !c.knownProvisioner(sc.Provisioner) {
		return nil, nil
	}
	if isWaitForFirstConsumer(sc) && claim.Annotations[annSelectedNode] == "" {
		return nil, nil // the scheduler has not picked a node yet (or we asked it to pick again)
	}
	return sc, nil
}

func (c *Controller) provision(ctx context.Context, key string, claim *v1.PersistentVolumeClaim) (err error) {
	sc, err := c.storageClassFor(claim)
	if sc == nil {
		if err == nil {
			c.inFlight.donePending(key)
		}
		return err
	}
	if c.node != nil { // --node-deployment: only this node's claims
		if mine, err := c.node.claimIsMine(ctx, c, claim, sc); !mine {
			return err
		}
	}
	sc, migrated, err := c.migrateClass(ctx, sc)
	if err != nil {
		c.fail(ctx, claim, sc, err)
		return err
	}
	pvName, err := volumeName(c.cfg.VolumeNamePrefix, string(claim.UID), c.cfg.VolumeNameUUIDLength)
	if err != nil {
		return err
	}
	if done, err := c.provisionedAlready(claim, pvName); done || err != nil {
		if err != nil {
			c.fail(ctx, claim, sc, err)
		} else {
			c.inFlight.donePending(key)
		}
		return err
	}
	if kind, _, ok := datasource.Of(claim); ok && !datasource.Handled(kind) {
		// A volume populator owns this PVC, as with the sidecar.
		if c.inFlight.announce(claim.UID) {
			c.events.Event(claim, v1.EventTypeNormal, reasonProvisioning, "Assuming an external populator will provision the volume")
		}
		return nil
	}

	// After InvalidArgument the same request is not sent again before
	// --retry-interval-max, unless the StorageClass was replaced
	// (sig-storage-lib-external-provisioner's slow set).
	if wait, ok := c.slow.wait(string(claim.UID), string(sc.UID)); ok {
		klog.FromContext(ctx).V(4).Info("Provisioning previously failed as infeasible; waiting before the next try", "PVC", klog.KObj(claim), "wait", wait)
		return hub.RequeueAfter(wait)
	}
	start := time.Now()
	defer func() {
		c.stats.provisioned(claim, err, start)
		c.capacity.Refresh() // the free space may have changed, as after the sidecar's Provision

	}()

	var node *v1.Node
	if nodeName := claim.Annotations[annSelectedNode]; nodeName != "" && c.topology {
		if node, err = c.nodeLister.Get(nodeName); err != nil {
			if apierrors.IsNotFound(err) {
				err = fmt.Errorf("selected node %q does not exist: %w", nodeName, err)
				return c.reschedule(ctx, claim, sc, err)
			}
			c.fail(ctx, claim, sc, fmt.Errorf("failed to get target node: %w", err))
			return err
		}
	}

	c.d.Steps.Trigger(ctx, fmt.Sprintf("PVC %s/%s asks for %s of StorageClass %q, which driver %s provisions: creating volume %s",
		claim.Namespace, claim.Name, sizeOf(claim), sc.Name, c.d.Driver, pvName))
	if c.inFlight.announce(claim.UID) {
		c.events.Event(claim, v1.EventTypeNormal, reasonProvisioning,
			fmt.Sprintf("External provisioner is provisioning volume for claim %q", claim.Namespace+"/"+claim.Name))
	}

	p, err := c.prepare(ctx, claim, sc, node, pvName)
	if err != nil {
		if r := (rescheduleError{}); errors.As(err, &r) {
			return c.reschedule(ctx, claim, sc, r.err)
		}
		c.fail(ctx, claim, sc, err)
		return err
	}
	vol, capacity, err := c.createVolume(markMigrated(ctx, migrated), key, claim, p, node != nil)
	if err != nil {
		var r rescheduleError
		if errors.As(err, &r) {
			return c.reschedule(ctx, claim, sc, r.err)
		}
		if status.Code(err) == codes.InvalidArgument {
			c.slow.mark(string(claim.UID), string(sc.UID))
		}
		c.fail(ctx, claim, sc, err)
		return err
	}
	pv := c.buildPV(claim, sc, p, vol, capacity)
	if migrated {
		if pv, err = c.inTreePV(ctx, key, pv, p.req.GetSecrets()); err != nil {
			c.fail(ctx, claim, sc, err)
			return err
		}
	}
	if err := c.savePV(ctx, claim, pv); err != nil {
		c.fail(ctx, claim, sc, fmt.Errorf("volume %s was created (handle %s) but its PersistentVolume could not be saved, will retry with the same name: %w", pvName, vol.GetVolumeId(), err))
		return err
	}
	c.inFlight.donePending(key)
	c.forget(claim.UID)
	c.events.Event(claim, v1.EventTypeNormal, reasonSucceeded, fmt.Sprintf("Successfully provisioned volume %s", pvName))
	klog.FromContext(ctx).Info("Provisioned volume", "PVC", klog.KObj(claim), "PV", pvName, "handle", vol.GetVolumeId(), "bytes", capacity)
	return nil
}

// provisionedAlready reports whether a PV for this claim exists (in the
// informer, or created by us and not yet seen by it). A PV with the name but
// bound to another claim is an error: never adopt or overwrite it.
func (c *Controller) provisionedAlready(claim *v1.PersistentVolumeClaim, pvName string) (bool, error) {
	if c.inFlight.createdFor(pvName, claim.UID) {
		return true, nil
	}
	pv, err := hub.Existing(c.pvLister.Get(pvName))
	if pv == nil || err != nil {
		return false, err
	}
	if pv.Spec.ClaimRef != nil && pv.Spec.ClaimRef.UID == claim.UID {
		return true, nil
	}
	return false, fmt.Errorf("PersistentVolume %s already exists and is not bound to this claim (UID %s); not touching it", pvName, claim.UID)
}

func (c *Controller) fail(ctx context.Context, claim *v1.PersistentVolumeClaim, sc *storagev1.StorageClass, err error) {
	msg := fmt.Sprintf("failed to provision volume with StorageClass %q: %v", sc.Name, err)
	klog.FromContext(ctx).Error(err, "Provisioning failed; will retry with backoff", "PVC", klog.KObj(claim), "storageClass", sc.Name)
	if !c.inFlight.reportFailure(claim.UID, msg, time.Now()) {
		return // already reported; events share the API budget with real work
	}
	c.events.Event(claim, v1.EventTypeWarning, reasonFailed, msg)
}

func sizeOf(claim *v1.PersistentVolumeClaim) string {
	q := claim.Spec.Resources.Requests[v1.ResourceStorage]
	return q.String()
}
