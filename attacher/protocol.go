package attacher

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/kubernetes-csi/csi-lib-utils/accessmodes"
	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"

	"github.com/csi-hub/csi-hub/internal/migration"
)

// NodeIDAnnotation on a VolumeAttachment remembers the node ID it was
// published with, so it can be detached even after the node's CSINode is gone.
const NodeIDAnnotation = "csi.alpha.kubernetes.io/node-id"

var notFinalizerSafe = regexp.MustCompile(`[^a-zA-Z0-9-]`)

// FinalizerName is the finalizer the external-attacher puts on
// VolumeAttachments and PersistentVolumes of driver. It must match upstream
// exactly so a cluster can switch between csi-hub and the sidecar.
func FinalizerName(driver string) string {
	name := notFinalizerSafe.ReplaceAllString(driver, "-")
	if name == "" || name[len(name)-1] == '-' {
		name += "X" // a finalizer name must not end with '-'
	}
	return "external-attacher/" + name
}

// nodeIDFromCSINode returns the node ID that driver's node plugin registered.
func nodeIDFromCSINode(driver string, csiNode *storagev1.CSINode) (string, bool) {
	for _, d := range csiNode.Spec.Drivers {
		if d.Name == driver {
			return d.NodeID, true
		}
	}
	return "", false
}

// volumeSource is what ControllerPublish/Unpublish need from a VolumeAttachment.
type volumeSource struct {
	pvName string // empty for an inline volume
	spec   *v1.PersistentVolumeSpec
	// migrated: an in-tree volume (a PV translated here, or an inline volume
	// kube-controller-manager translated), whose handle may need repairing
	// with the node ID before it is compared with ListVolumes.
	migrated bool
}

func (s volumeSource) csi() *v1.CSIPersistentVolumeSource { return s.spec.CSI }

// sourceOf checks the VolumeAttachment's source; getPV reads a PV by name. A
// PV with an in-tree source (awsElasticBlockStore, gcePersistentDisk, ...)
// that kube-controller-manager handed to the driver under CSI migration is
// translated with csi-translation-lib, as external-attacher does; the
// returned PV is always the stored one.
func sourceOf(ctx context.Context, va *storagev1.VolumeAttachment, getPV func(string) (*v1.PersistentVolume, error)) (volumeSource, *v1.PersistentVolume, error) {
	src := va.Spec.Source
	switch {
	case src.PersistentVolumeName != nil && src.InlineVolumeSpec != nil:
		return volumeSource{}, nil, errors.New("spec.source has both persistentVolumeName and inlineVolumeSpec; exactly one is allowed")
	case src.PersistentVolumeName != nil:
		pv, err := getPV(*src.PersistentVolumeName)
		if err != nil {
			return volumeSource{}, nil, fmt.Errorf("PersistentVolume %q of spec.source.persistentVolumeName: %w", *src.PersistentVolumeName, err)
		}
		if pv.Spec.CSI == nil && migration.IsInTree(pv) {
			translated, err := migration.PVToCSI(ctx, pv, "")
			if err != nil {
				return volumeSource{}, nil, err
			}
			return volumeSource{pvName: pv.Name, spec: &translated.Spec, migrated: true}, pv, nil
		}
		if pv.Spec.CSI == nil {
			return volumeSource{}, nil, fmt.Errorf("PersistentVolume %q is not a CSI volume (spec.csi is empty) and has no in-tree source csi-translation-lib can translate", pv.Name)
		}
		return volumeSource{pvName: pv.Name, spec: &pv.Spec}, pv, nil
	case src.InlineVolumeSpec != nil:
		// kube-controller-manager puts an inline spec here only for in-tree
		// volumes migrated to CSI; it has already been translated.
		if src.InlineVolumeSpec.CSI == nil {
			return volumeSource{}, nil, errors.New("spec.source.inlineVolumeSpec has no csi source")
		}
		return volumeSource{spec: src.InlineVolumeSpec, migrated: true}, nil, nil
	default:
		return volumeSource{}, nil, errors.New("spec.source names neither persistentVolumeName nor inlineVolumeSpec")
	}
}

// volumeCapability derives the capability ControllerPublishVolume gets from
// the PV: block or mount (with fsType and mount options), and the access mode.
func volumeCapability(spec *v1.PersistentVolumeSpec, singleNodeMultiWriter bool, defaultFSType string) (*csi.VolumeCapability, error) {
	if spec.CSI == nil {
		return nil, errors.New("spec.csi is empty")
	}
	capability := &csi.VolumeCapability{AccessMode: &csi.VolumeCapability_AccessMode{}}
	if spec.VolumeMode != nil && *spec.VolumeMode == v1.PersistentVolumeBlock {
		capability.AccessType = &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}}
	} else {
		fsType := spec.CSI.FSType
		if fsType == "" {
			fsType = defaultFSType
		}
		capability.AccessType = &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{
			FsType:     fsType,
			MountFlags: slices.Clone(spec.MountOptions),
		}}
	}
	mode, err := accessmodes.ToCSIAccessMode(spec.AccessModes, singleNodeMultiWriter)
	if err != nil {
		return nil, fmt.Errorf("spec.accessModes: %w", err)
	}
	capability.AccessMode.Mode = mode
	return capability, nil
}

// publishedTo reports whether nodeID is among the nodes ListVolumes said
// volumeID is published to.
func publishedTo(published map[string][]string, volumeID, nodeID string) bool {
	return slices.Contains(published[volumeID], nodeID)
}
