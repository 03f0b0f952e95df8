package snapshotter

import (
	"context"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	v1 "k8s.io/api/core/v1"
)

// checkMember asks ListSnapshots about a member of a group snapshot that the
// snapshot-controller recorded as not ready, as the sidecar does: the
// handle is in status (the spec names the source volume) and the secret in
// the annotations the snapshot-controller copied from the group class.
func (c *Controller) checkMember(ctx context.Context, content *snapv1.VolumeSnapshotContent) (*snapv1.VolumeSnapshotContent, error) {
	return c.single().reported(ctx, content, c.listMemberAndRecord, ReasonCheckFailed, msgCheckFailed)
}

func (c *Controller) listMemberAndRecord(ctx context.Context, content *snapv1.VolumeSnapshotContent) (*snapv1.VolumeSnapshotContent, error) {
	return c.lookUpAndRecord(ctx, content, *content.Status.SnapshotHandle, "status.snapshotHandle", func() (*v1.SecretReference, error) {
		return snapshotterSecretRef(content)
	})
}
