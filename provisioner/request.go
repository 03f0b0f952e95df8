package provisioner

import (
	"fmt"
	"maps"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/kubernetes-csi/csi-lib-utils/accessmodes"
	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
)

// volumeName is the CreateVolume name and PV name: <prefix>-<PVC UID>. It is
// a pure function of the PVC, so every retry (and every csi-hub or sidecar
// process) asks the driver for the same volume: CreateVolume is idempotent by
// name, which is what prevents duplicate backend volumes.
func volumeName(prefix, uid string, uuidLength int) (string, error) {
	if prefix == "" {
		return "", fmt.Errorf("volume name prefix must not be empty")
	}
	if uid == "" {
		return "", fmt.Errorf("PVC has no UID")
	}
	if uuidLength == -1 {
		return prefix + "-" + uid, nil
	}
	compact := strings.ReplaceAll(uid, "-", "")
	if uuidLength > len(compact) {
		uuidLength = len(compact)
	}
	return prefix + "-" + compact[:uuidLength], nil
}

// fsTypeFor returns the filesystem type from the StorageClass parameters
// (csi.storage.k8s.io/fstype, or the deprecated "fstype" key, not both), else
// the --default-fstype.
func fsTypeFor(params map[string]string, defaultFSType string) (string, error) {
	found, fsType := 0, ""
	for k, v := range params {
		if strings.EqualFold(k, "fstype") || k == keyFSType {
			fsType = v
			found++
		}
	}
	if found > 1 {
		return "", fmt.Errorf("fstype specified in parameters with both \"fstype\" and %q keys", keyFSType)
	}
	if fsType == "" {
		fsType = defaultFSType
	}
	return fsType, nil
}

func isBlock(claim *v1.PersistentVolumeClaim) bool {
	return claim.Spec.VolumeMode != nil && *claim.Spec.VolumeMode == v1.PersistentVolumeBlock
}

// volumeCapabilities maps each PVC access mode to one CSI capability: block or
// mount (with fsType and the StorageClass mountOptions). With the driver's
// SINGLE_NODE_MULTI_WRITER capability, RWO becomes SINGLE_NODE_MULTI_WRITER and
// RWOP SINGLE_NODE_SINGLE_WRITER; without it both are SINGLE_NODE_WRITER.
func volumeCapabilities(claim *v1.PersistentVolumeClaim, mountOptions []string, fsType string, singleNodeMultiWriter bool) ([]*csi.VolumeCapability, error) {
	if len(claim.Spec.AccessModes) == 0 {
		return nil, fmt.Errorf("PVC spec.accessModes is empty")
	}
	caps := make([]*csi.VolumeCapability, 0, len(claim.Spec.AccessModes))
	for _, mode := range claim.Spec.AccessModes {
		csiMode, err := accessmodes.ToCSIAccessMode([]v1.PersistentVolumeAccessMode{mode}, singleNodeMultiWriter)
		if err != nil {
			return nil, fmt.Errorf("PVC spec.accessModes: %w", err)
		}
		c := &csi.VolumeCapability{AccessMode: &csi.VolumeCapability_AccessMode{Mode: csiMode}}
		if isBlock(claim) {
			c.AccessType = &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}}
		} else {
			c.AccessType = &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{
				FsType: fsType, MountFlags: mountOptions,
			}}
		}
		caps = append(caps, c)
	}
	return caps, nil
}

// knownReservedKeys are the csi.storage.k8s.io/ parameters the provisioner
// consumes itself; any other key with that prefix is a typo and rejected.
var knownReservedKeys = map[string]bool{keyFSType: true}

func init() {
	for _, kind := range append(secretKinds(), "") {
		name, ns := secretKeys(kind)
		knownReservedKeys[name], knownReservedKeys[ns] = true, true
	}
}

// driverParameters returns the StorageClass parameters minus the reserved
// csi.storage.k8s.io/ keys (deprecated un-prefixed keys such as
// csiProvisionerSecretName pass through, as with the sidecar). An unknown key
// in the reserved namespace is an error naming the key.
func driverParameters(params map[string]string) (map[string]string, error) {
	out := make(map[string]string, len(params))
	for k, v := range params {
		if strings.HasPrefix(k, reservedPrefix) {
			if !knownReservedKeys[k] {
				return nil, fmt.Errorf("StorageClass parameter %q: unknown key in the reserved namespace %s", k, reservedPrefix)
			}
			continue
		}
		out[k] = v
	}
	return out, nil
}

// addExtraMetadata adds the --extra-create-metadata parameters.
func addExtraMetadata(params map[string]string, claim *v1.PersistentVolumeClaim, pvName string) map[string]string {
	out := maps.Clone(params)
	if out == nil {
		out = map[string]string{}
	}
	out[keyPVCName] = claim.Name
	out[keyPVCNS] = claim.Namespace
	out[keyPVName] = pvName
	return out
}

func isWaitForFirstConsumer(sc *storagev1.StorageClass) bool {
	return sc.VolumeBindingMode != nil && *sc.VolumeBindingMode == storagev1.VolumeBindingWaitForFirstConsumer
}
