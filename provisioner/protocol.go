package provisioner

import "fmt"

// Object protocol of the external-provisioner: annotation, finalizer, parameter
// and event names that kube-controller-manager, kubelet and the official
// sidecar rely on. They must never change.
const (
	annStorageProvisioner     = "volume.kubernetes.io/storage-provisioner"
	annBetaStorageProvisioner = "volume.beta.kubernetes.io/storage-provisioner"
	annMigratedTo             = "pv.kubernetes.io/migrated-to"
	annSelectedNode           = "volume.kubernetes.io/selected-node"
	annDynamicallyProvisioned = "pv.kubernetes.io/provisioned-by"
	annBetaStorageClass       = "volume.beta.kubernetes.io/storage-class"

	annDeletionSecretName      = "volume.kubernetes.io/provisioner-deletion-secret-name"
	annDeletionSecretNamespace = "volume.kubernetes.io/provisioner-deletion-secret-namespace"
	// The controller-modify secret, for the resizer's ControllerModifyVolume.
	annModifySecretName      = "volume.kubernetes.io/controller-modify-secret-name"
	annModifySecretNamespace = "volume.kubernetes.io/controller-modify-secret-namespace"

	// finalizerPV keeps a Delete-policy PV until its backend volume is gone.
	finalizerPV = "external-provisioner.volume.kubernetes.io/finalizer"

	// provisionerIDKey is added to every PV's volumeAttributes.
	provisionerIDKey = "storage.kubernetes.io/csiProvisionerIdentity"

	// Parameters with this prefix are for the provisioner, never for the driver.
	reservedPrefix = "csi.storage.k8s.io/"
	keyFSType      = reservedPrefix + "fstype"
	keyPVCName     = reservedPrefix + "pvc/name"
	keyPVCNS       = reservedPrefix + "pvc/namespace"
	keyPVName      = reservedPrefix + "pv/name"
)

// Event reasons, as the sidecar emits them.
const (
	reasonProvisioning       = "Provisioning"
	reasonSucceeded          = "ProvisioningSucceeded"
	reasonFailed             = "ProvisioningFailed"
	reasonVolumeFailedDelete = "VolumeFailedDelete"
	reasonVolumeDelete       = "VolumeDelete"
)

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }
