// Package attacher is the external-attacher's job inside csi-hub: it turns
// VolumeAttachments created by kube-controller-manager into
// ControllerPublishVolume / ControllerUnpublishVolume calls and reports the
// result in the objects exactly as the external-attacher sidecar does, so a
// cluster can switch between the two with no object migration:
//
//   - only VolumeAttachments with spec.attacher == the driver name are touched;
//   - before publishing, finalizer external-attacher/<driver, non [a-zA-Z0-9-]
//     replaced by "-"> goes on the PV and on the VolumeAttachment, with
//     annotation csi.alpha.kubernetes.io/node-id (node ID from the node's
//     CSINode.spec.drivers[name=driver].nodeID);
//   - success: status.attached=true, status.attachmentMetadata = publish
//     context; failure: status.attachError{time, message, errorCode}, retried
//     with per-object exponential backoff;
//   - deletion: ControllerUnpublishVolume (node ID from CSINode, else the
//     annotation), then the finalizer is removed; failure: status.detachError;
//   - the PV loses the finalizer once it is being deleted and no
//     VolumeAttachment refers to it;
//   - without PUBLISH_UNPUBLISH_VOLUME, VolumeAttachments are marked attached
//     with no CSI call and no finalizer ("trivial" mode);
//   - with LIST_VOLUMES + LIST_VOLUMES_PUBLISHED_NODES, every --reconcile-sync
//     the driver's publications are compared with the VolumeAttachments and a
//     disagreeing one is synced again (published again if the backend lost it).
//
// Differences from the sidecar, all invisible in the objects' final state:
// finalizers are added and removed with strategic merge patches (upstream
// sends the whole list, which can drop a finalizer added concurrently by
// someone else); syncs on a cached copy older than our own last write are
// skipped (no repeated CSI call or write); a Warning event (AttachFailed /
// DetachFailed) is emitted on the VolumeAttachment next to the status error
// (upstream only writes the status; kube-controller-manager relays it on the
// Pod); in trivial mode a finalizer left by an earlier publishing run is
// removed instead of blocking the deletion forever; errorCode is always sent
// (API servers without MutableCSINodeAllocatableCount drop it).
package attacher
