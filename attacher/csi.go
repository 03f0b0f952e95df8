package attacher

import (
	"context"
	"errors"
	"fmt"

	"github.com/container-storage-interface/spec/lib/go/csi"
	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/csi-hub/csi-hub/internal/csiconn"
	"github.com/csi-hub/csi-hub/internal/edit"
	"github.com/csi-hub/csi-hub/internal/hub"
)

// attach checks as much as it can before adding the VolumeAttachment's
// finalizer (which would block its deletion on a broken request), then
// protects the PV and the VolumeAttachment with finalizers and calls
// ControllerPublishVolume. It returns the VolumeAttachment as last written.
func (c *Controller) attach(ctx context.Context, va *storagev1.VolumeAttachment) (*storagev1.VolumeAttachment, map[string]string, error) {
	src, pv, err := sourceOf(ctx, va, c.pvLister.Get)
	if err != nil {
		return va, nil, err
	}
	if pv != nil {
		if pv.DeletionTimestamp != nil {
			return va, nil, fmt.Errorf("PersistentVolume %q is being deleted; it is not attached again", pv.Name)
		}
		// The PV must outlive every VolumeAttachment of it: detaching needs its volume handle.
		if _, err := c.patchPVMeta(ctx, pv, edit.AddFinalizer(c.finalizer)); err != nil {
			return va, nil, fmt.Errorf("adding finalizer %s to PersistentVolume %q: %w", c.finalizer, pv.Name, err)
		}
	}
	capability, err := volumeCapability(src.spec, c.multiWriter, c.cfg.DefaultFSType)
	if err != nil {
		return va, nil, fmt.Errorf("volume capability of %s: %w", sourceName(va), err)
	}
	secrets, err := c.publishSecrets(ctx, src.csi())
	if err != nil {
		return va, nil, err
	}
	nodeID, err := c.nodeID(va.Spec.NodeName, nil)
	if err != nil {
		return va, nil, err
	}
	va, err = c.patchVAMeta(ctx, va, edit.AddFinalizer(c.finalizer).And(edit.SetAnnotation(NodeIDAnnotation, nodeID)))
	if err != nil {
		return va, nil, fmt.Errorf("adding finalizer and node ID to the VolumeAttachment: %w", err)
	}

	// The migrated label of csi_sidecar_operations_seconds, as the sidecar's markAsMigrated.
	cctx, cancel := context.WithTimeout(csiconn.MarkMigrated(ctx, src.migrated), c.d.Timeout)
	defer cancel()
	resp, err := c.csi.ControllerPublishVolume(cctx, &csi.ControllerPublishVolumeRequest{
		VolumeId:         src.csi().VolumeHandle,
		NodeId:           nodeID,
		VolumeCapability: capability,
		// "The CO MUST set this field to false if the SP does not have the PUBLISH_READONLY capability."
		Readonly:      src.csi().ReadOnly && c.readOnly,
		Secrets:       secrets,
		VolumeContext: src.csi().VolumeAttributes,
	})
	if err != nil {
		return va, nil, fmt.Errorf("ControllerPublishVolume of volume %s to node %s: %w", src.csi().VolumeHandle, nodeID, err)
	}
	return va, resp.GetPublishContext(), nil
}

// detach calls ControllerUnpublishVolume for the VolumeAttachment. The node
// ID comes from the CSINode, or from the annotation saved at attach time when
// the node (and its CSINode) is already gone.
func (c *Controller) detach(ctx context.Context, va *storagev1.VolumeAttachment) error {
	src, _, err := sourceOf(ctx, va, c.pvLister.Get)
	if err != nil {
		return err
	}
	secrets, err := c.publishSecrets(ctx, src.csi())
	if err != nil {
		return err
	}
	nodeID, err := c.nodeID(va.Spec.NodeName, va)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(csiconn.MarkMigrated(ctx, src.migrated), c.d.Timeout)
	defer cancel()
	_, err = c.csi.ControllerUnpublishVolume(cctx, &csi.ControllerUnpublishVolumeRequest{
		VolumeId: src.csi().VolumeHandle,
		NodeId:   nodeID,
		Secrets:  secrets,
	})
	if err != nil {
		return fmt.Errorf("ControllerUnpublishVolume of volume %s from node %s: %w", src.csi().VolumeHandle, nodeID, err)
	}
	return nil
}

// nodeID finds the driver's ID for a Kubernetes node in its CSINode, which
// the node-driver-registrar fills in. va, when given, supplies the annotation
// as a fallback (detach of a node that is gone).
func (c *Controller) nodeID(nodeName string, va *storagev1.VolumeAttachment) (string, error) {
	var lookupErr error
	csiNode, err := c.csiNodeLister.Get(nodeName)
	switch {
	case err == nil:
		if id, ok := nodeIDFromCSINode(c.d.Driver, csiNode); ok {
			return id, nil
		}
		lookupErr = fmt.Errorf("CSINode %q does not list driver %s: its node plugin has not registered on node %q",
			nodeName, c.d.Driver, nodeName)
	case apierrors.IsNotFound(err):
		lookupErr = fmt.Errorf("CSINode %q not found: driver %s has not registered on node %q (is its node plugin running?)",
			nodeName, c.d.Driver, nodeName)
	default:
		lookupErr = fmt.Errorf("reading CSINode %q: %w", nodeName, err)
	}
	if va != nil {
		if id, ok := va.Annotations[NodeIDAnnotation]; ok && id != "" {
			return id, nil
		}
	}
	return "", lookupErr
}

// publishSecrets reads the PV's controllerPublishSecretRef.
func (c *Controller) publishSecrets(ctx context.Context, src *v1.CSIPersistentVolumeSource) (map[string]string, error) {
	ref := src.ControllerPublishSecretRef
	if ref == nil {
		return nil, nil
	}
	if ref.Name == "" {
		return nil, errors.New("spec.csi.controllerPublishSecretRef has no name")
	}
	secrets, err := hub.ReadSecret(ctx, c.d.Kube, ref)
	if err != nil {
		return nil, fmt.Errorf("controllerPublishSecretRef: %w", err)
	}
	return secrets, nil
}
