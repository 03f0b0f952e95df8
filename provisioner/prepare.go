package provisioner

import (
	"context"
	"fmt"

	"github.com/container-storage-interface/spec/lib/go/csi"
	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/csi-hub/csi-hub/internal/hub"
	"github.com/csi-hub/csi-hub/provisioner/datasource"
)

// plan is everything decided before CreateVolume: the request and the parts
// of the PV that do not depend on the driver's answer.
type plan struct {
	pvName         string
	fsType         string
	req            *csi.CreateVolumeRequest
	source         *v1.CSIPersistentVolumeSource // secret refs; handle and attributes come later
	deletionSecret *v1.SecretReference
	modifySecret   *v1.SecretReference // recorded in PV annotations, not in spec.csi
}

// prepare checks the claim and builds the CreateVolume request. Its only
// write is the protection finalizer a data source handler puts on the
// source (as the sidecar does, before CreateVolume); it reads the
// provisioner Secret (one GET) only when the StorageClass names one.
func (c *Controller) prepare(ctx context.Context, claim *v1.PersistentVolumeClaim, sc *storagev1.StorageClass, node *v1.Node, pvName string) (*plan, error) {
	if claim.Spec.Selector != nil {
		return nil, fmt.Errorf("PVC spec.selector is not supported for dynamically provisioned volumes")
	}
	fsType, caps, params, err := c.volumeShape(claim, sc)
	if err != nil {
		return nil, err
	}
	if c.cfg.ExtraCreateMetadata {
		params = addExtraMetadata(params, claim, pvName)
	}
	size := claim.Spec.Resources.Requests[v1.ResourceStorage]
	req := &csi.CreateVolumeRequest{
		Name:               pvName,
		Parameters:         params,
		VolumeCapabilities: caps,
		CapacityRange:      &csi.CapacityRange{RequiredBytes: size.Value()},
	}

	if kind, name, ok := datasource.Of(claim); ok {
		if err := c.requireSourceCapability(kind); err != nil {
			return nil, err
		}
		if req.VolumeContentSource, err = c.contentSource(ctx, claim, sc, kind, name); err != nil {
			return nil, err
		}
	}

	if asked, ok := c.inFlight.askedTopology(claim.UID); ok && c.topology {
		req.AccessibilityRequirements = asked
	} else if c.topology {
		req.AccessibilityRequirements, err = accessibilityRequirements(topologyRequest{
			driver: c.d.Driver, claimName: claim.Name, allowed: sc.AllowedTopologies, selectedNode: node,
			strict: c.cfg.StrictTopology, immediate: c.cfg.ImmediateTopology,
			csiNodes: c.csiNodeLister, nodes: c.nodeLister,
		})
		if err != nil {
			return nil, fmt.Errorf("error generating accessibility requirements: %w", err)
		}
	}

	if name := claim.Spec.VolumeAttributesClassName; name != nil && *name != "" {
		if req.MutableParameters, err = c.mutableParameters(ctx, *name); err != nil {
			return nil, err
		}
	}

	// As the sidecar (since v5), the provisioner secret's template may use the
	// PVC's annotations; deletion needs no PVC, it reads the resolved name from
	// the PV's provisioner-deletion-secret annotations.
	provRef, err := secretRef(secretProvisioner, sc.Parameters, pvName, claim)
	if err != nil {
		return nil, err
	}
	if req.Secrets, err = hub.ReadSecret(ctx, c.d.Kube, provRef); err != nil {
		return nil, err
	}
	src := &v1.CSIPersistentVolumeSource{Driver: c.d.Driver}
	for kind, field := range map[string]**v1.SecretReference{
		secretControllerPublish: &src.ControllerPublishSecretRef,
		secretNodeStage:         &src.NodeStageSecretRef,
		secretNodePublish:       &src.NodePublishSecretRef,
		secretControllerExpand:  &src.ControllerExpandSecretRef,
		secretNodeExpand:        &src.NodeExpandSecretRef,
	} {
		if *field, err = secretRef(kind, sc.Parameters, pvName, claim); err != nil {
			return nil, err
		}
	}
	modifyRef, err := secretRef(secretControllerModify, sc.Parameters, pvName, claim)
	if err != nil {
		return nil, err
	}
	return &plan{pvName: pvName, fsType: fsType, req: req, source: src, deletionSecret: provRef, modifySecret: modifyRef}, nil
}

func (c *Controller) requireSourceCapability(kind schema.GroupKind) error {
	switch kind {
	case KindVolumeSnapshot:
		if !c.d.Caps.Has(csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT) {
			return fmt.Errorf("driver %s cannot restore snapshots: CREATE_DELETE_SNAPSHOT capability is not reported", c.d.Driver)
		}
	case KindPVC:
		if !c.d.Caps.Has(csi.ControllerServiceCapability_RPC_CLONE_VOLUME) {
			return fmt.Errorf("driver %s cannot clone volumes: CLONE_VOLUME capability is not reported", c.d.Driver)
		}
	}
	return nil
}

// mutableParameters reads the PVC's VolumeAttributesClass (one GET, only for
// PVCs that name one) for CreateVolume's mutable_parameters.
func (c *Controller) mutableParameters(ctx context.Context, name string) (map[string]string, error) {
	if !c.d.Caps.Has(csi.ControllerServiceCapability_RPC_MODIFY_VOLUME) {
		return nil, fmt.Errorf("PVC spec.volumeAttributesClassName %q: driver %s does not support VolumeAttributesClasses (no MODIFY_VOLUME capability)", name, c.d.Driver)
	}
	vac, err := c.d.Kube.StorageV1().VolumeAttributesClasses().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("PVC spec.volumeAttributesClassName %q: %w", name, err)
	}
	if vac.DriverName != c.d.Driver {
		return nil, fmt.Errorf("PVC spec.volumeAttributesClassName %q: class is for driver %q, not %q", name, vac.DriverName, c.d.Driver)
	}
	return vac.Parameters, nil
}

// volumeShape is what CreateVolume and GetCapacity both ask with: the file
// system type, the volume capabilities and the StorageClass parameters meant
// for the driver (csi.storage.k8s.io/ keys taken out).
func (c *Controller) volumeShape(claim *v1.PersistentVolumeClaim, sc *storagev1.StorageClass) (fsType string, caps []*csi.VolumeCapability, params map[string]string, err error) {
	if fsType, err = fsTypeFor(sc.Parameters, c.cfg.DefaultFSType); err != nil {
		return "", nil, nil, err
	}
	if caps, err = volumeCapabilities(claim, sc.MountOptions, fsType, c.singleNodeMultiWriter); err != nil {
		return "", nil, nil, err
	}
	if params, err = driverParameters(sc.Parameters); err != nil {
		return "", nil, nil, err
	}
	return fsType, caps, params, nil
}
