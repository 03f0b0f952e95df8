package snapshotter

import (
	"context"

	"github.com/container-storage-interface/spec/lib/go/csi"
	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"

	"github.com/csi-hub/csi-hub/internal/hub"
)

// checkMember asks ListSnapshots about a member of a group snapshot that the
// snapshot-controller recorded as not ready, as the sidecar does: the
// handle is in status (the spec names the source volume) and the secret in
// the annotations the snapshot-controller copied from the group class.
func (c *Controller) checkMember(ctx context.Context, content *snapv1.VolumeSnapshotContent) (*snapv1.VolumeSnapshotContent, error) {
	return reported(ctx, content, c.listMemberAndRecord, c.recordError, ReasonCheckFailed, msgCheckFailed)
}

func (c *Controller) listMemberAndRecord(ctx context.Context, content *snapv1.VolumeSnapshotContent) (*snapv1.VolumeSnapshotContent, error) {
	handle := *content.Status.SnapshotHandle
	if !c.d.ListSupported {
		return c.recordSnapshot(ctx, content, handle, &csi.Snapshot{SnapshotId: handle, ReadyToUse: true})
	}
	ref, err := snapshotterSecretRef(content)
	if err != nil {
		return content, err
	}
	secrets, err := hub.ReadSecret(ctx, c.d.Kube, ref)
	if err != nil {
		return content, err
	}
	return c.lookUpAndRecord(ctx, content, handle, secrets, "status.snapshotHandle")
}
