package resizer

import (
	"context"
	"errors"
	"fmt"
	"maps"

	"github.com/csi-hub/csi-hub/internal/hub"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/kubernetes-csi/csi-lib-utils/accessmodes"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// expandVolume calls ControllerExpandVolume for pv and returns the size the
// driver reports and whether kubelet must finish with NodeExpandVolume. For a
// driver that expands only on the node ("trivial resizer") nothing is called:
// the PV takes the requested size and the node does the work.
func (c *Controller) expandVolume(ctx context.Context, pv *v1.PersistentVolume, size resource.Quantity) (resource.Quantity, bool, error) {
	if c.expand.nodeOnly {
		return size, true, nil
	}
	src := pv.Spec.CSI
	if src.VolumeHandle == "" {
		return resource.Quantity{}, false, notCalled{errors.New("PV spec.csi.volumeHandle is empty")}
	}
	secrets, err := c.secrets(ctx, src.ControllerExpandSecretRef, "spec.csi.controllerExpandSecretRef")
	if err != nil {
		return resource.Quantity{}, false, notCalled{err}
	}
	capability, err := c.volumeCapability(pv)
	if err != nil {
		return resource.Quantity{}, false, notCalled{err}
	}
	cctx, cancel := context.WithTimeout(ctx, c.d.Timeout)
	defer cancel()
	resp, err := c.csi.ControllerExpandVolume(cctx, &csi.ControllerExpandVolumeRequest{
		VolumeId:         src.VolumeHandle,
		CapacityRange:    &csi.CapacityRange{RequiredBytes: size.Value()},
		Secrets:          secrets,
		VolumeCapability: capability,
	})
	if err != nil {
		return resource.Quantity{}, false, err
	}
	got := resp.GetCapacityBytes()
	if got < size.Value() {
		// capacity_bytes is required to cover the request; a driver that
		// leaves it 0 must not shrink the PV's recorded size to nothing.
		got = size.Value()
	}
	return *resource.NewQuantity(got, resource.BinarySI), resp.GetNodeExpansionRequired(), nil
}

// modifyVolume calls ControllerModifyVolume with the class's parameters.
func (c *Controller) modifyVolume(ctx context.Context, pvc *v1.PersistentVolumeClaim, pv *v1.PersistentVolume, params map[string]string) error {
	src := pv.Spec.CSI
	if src.VolumeHandle == "" {
		return notCalled{errors.New("PV spec.csi.volumeHandle is empty")}
	}
	if c.cfg.ExtraModifyMetadata {
		params = maps.Clone(params)
		if params == nil {
			params = map[string]string{}
		}
		params[paramPVCName], params[paramPVCNamespace], params[paramPVName] = pvc.Name, pvc.Namespace, pv.Name
	}
	// The provisioner records a dedicated modify secret on the PV; without
	// one, the expand secret is used, as external-resizer does.
	ref, field := src.ControllerExpandSecretRef, "spec.csi.controllerExpandSecretRef"
	if name, ns := pv.Annotations[annModifySecretName], pv.Annotations[annModifySecretNamespace]; name != "" && ns != "" {
		ref, field = &v1.SecretReference{Name: name, Namespace: ns}, "annotation "+annModifySecretName
	}
	secrets, err := c.secrets(ctx, ref, field)
	if err != nil {
		return notCalled{err}
	}
	cctx, cancel := context.WithTimeout(ctx, c.d.Timeout)
	defer cancel()
	_, err = c.csi.ControllerModifyVolume(cctx, &csi.ControllerModifyVolumeRequest{
		VolumeId:          src.VolumeHandle,
		Secrets:           secrets,
		MutableParameters: params,
	})
	return err
}

// secrets reads the Secret the PV's field names (hub.ReadSecret says why a GET).
func (c *Controller) secrets(ctx context.Context, ref *v1.SecretReference, field string) (map[string]string, error) {
	if ref == nil {
		return nil, nil
	}
	if ref.Name == "" || ref.Namespace == "" {
		return nil, fmt.Errorf("PV %s names secret %q in namespace %q: both are required", field, ref.Name, ref.Namespace)
	}
	secrets, err := hub.ReadSecret(ctx, c.d.Kube, ref)
	if err != nil {
		return nil, fmt.Errorf("PV %s: %w", field, err)
	}
	return secrets, nil
}

// volumeCapability describes the PV to the driver (block or mount, access mode).
func (c *Controller) volumeCapability(pv *v1.PersistentVolume) (*csi.VolumeCapability, error) {
	mode, err := accessmodes.ToCSIAccessMode(pv.Spec.AccessModes,
		c.d.Caps.Has(csi.ControllerServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER))
	if err != nil {
		return nil, fmt.Errorf("PV %s spec.accessModes: %w", pv.Name, err)
	}
	capability := &csi.VolumeCapability{AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode}}
	if pv.Spec.VolumeMode != nil && *pv.Spec.VolumeMode == v1.PersistentVolumeBlock {
		capability.AccessType = &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}}
	} else {
		capability.AccessType = &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{
			FsType: pv.Spec.CSI.FSType, MountFlags: pv.Spec.MountOptions}}
	}
	return capability, nil
}
