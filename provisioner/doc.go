// Package provisioner is csi-hub's external-provisioner: it watches
// PersistentVolumeClaims of the driver's StorageClasses, calls CreateVolume and
// creates the PersistentVolume exactly as the official csi-provisioner sidecar
// does, and deletes the backend volume of Released PVs whose reclaim policy is
// Delete. The objects it writes are those the sidecar writes, so a cluster can
// switch between csi-hub and the sidecar without migrating anything:
//
//   - acts on PVCs annotated volume.kubernetes.io/storage-provisioner (or the
//     beta key) with the driver name, whose StorageClass names the driver; with
//     WaitForFirstConsumer only once volume.kubernetes.io/selected-node is set;
//   - CreateVolume name and PV name <--volume-name-prefix>-<PVC UID>, so every
//     retry, restart or sidecar asks the driver for the same volume;
//   - capabilities from accessModes/volumeMode, fsType from
//     csi.storage.k8s.io/fstype or --default-fstype, StorageClass mountOptions;
//   - parameters minus the reserved csi.storage.k8s.io/ keys, plus the PVC/PV
//     names with --extra-create-metadata; mutable_parameters from a
//     VolumeAttributesClass;
//   - secrets from csi.storage.k8s.io/<kind>-secret-{name,namespace} with
//     ${pv.name}, ${pvc.name}, ${pvc.namespace}, ${pvc.annotations['k']};
//   - topology from allowedTopologies or the CSINode keys and Node labels,
//     the selected node's segment preferred; ResourceExhausted for a selected
//     node, or a selected node that no longer exists, removes selected-node so
//     the scheduler picks again;
//   - the PV: annotation pv.kubernetes.io/provisioned-by, the deletion-secret
//     annotations, finalizer external-provisioner.volume.kubernetes.io/finalizer
//     (Delete policy), claimRef, capacity, spec.csi with volumeAttributes
//     including storage.kubernetes.io/csiProvisionerIdentity and the secret
//     references, reclaim policy, mountOptions, volumeMode, nodeAffinity;
//   - events Provisioning, ProvisioningSucceeded, ProvisioningFailed on the
//     PVC and VolumeFailedDelete on the PV;
//   - with --enable-capacity, CSIStorageCapacity objects per StorageClass and
//     topology segment, labelled csi.storage.k8s.io/drivername and
//     csi.storage.k8s.io/managed-by=external-provisioner, owned as
//     --capacity-ownerref-level says, in the namespace of $NAMESPACE.
//
// Differences that only save API writes (the resulting objects are the same):
// the finalizer is put only on Delete-policy PVs (the sidecar adds it to every
// PV and patches it away again for Retain), the Provisioning event is
// emitted once per claim rather than on every retry, and an unchanged
// ProvisioningFailed is repeated at most once a minute per claim.
//
// Leaks: a claim whose CreateVolume may have created a volume that no PV
// records yet (timeout, lost connection, failed PV create) is provisioned to
// the end even if the PVC is deleted meanwhile; the PV then records the volume,
// becomes Released and is deleted. Like the sidecar, this memory does not
// survive a restart of the process.
//
// Node deployment (--node-deployment, nodedeployment.go): one process per
// node beside the node's driver provisions the claims selected for its node
// ($NODE_NAME) and competes for Immediate claims by writing selected-node, as
// external-provisioner's distributed provisioning does; the node's topology
// and capacity segment come from NodeGetInfo.
//
// Data sources: a VolumeSnapshot (restore; the driver needs
// CREATE_DELETE_SNAPSHOT) or a PersistentVolumeClaim (clone; CLONE_VOLUME) in
// the claim's namespace becomes CreateVolume's volume_content_source after
// the sidecar's checks (see datasource_restore.go, datasource_clone.go). While
// a claim is being provisioned from it, the source carries
// provisioner.storage.kubernetes.io/volumesnapshot-as-source-protection or
// .../cloning-protection; the finalizer goes once no pending claim uses the
// source (after binding or deletion of the claims; the sidecar keeps the
// clone finalizer until the source PVC is deleted). A source that is missing,
// not ready or invalid gives a ProvisioningFailed event and a retry with
// backoff, never an empty volume. Sources of other kinds belong to volume
// populators and are ignored.
package provisioner
