package snapshotter

import (
	"context"

	"github.com/container-storage-interface/spec/lib/go/csi"
	groupv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumegroupsnapshot/v1"
	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Group content writes follow internal/edit, as single contents do (writes.go, kind.go).

// recordGroup writes what the driver said into status: the handle, creation
// time and (withMembers) the member list are set once; readiness follows the
// driver, and becoming ready clears an earlier error.
func (c *Controller) recordGroup(ctx context.Context, content *groupv1.VolumeGroupSnapshotContent, handle string, g *csi.VolumeGroupSnapshot, withMembers bool) (*groupv1.VolumeGroupSnapshotContent, error) {
	st := content.Status
	if st == nil {
		st = &groupv1.VolumeGroupSnapshotContentStatus{}
	}
	return c.groups().status(ctx, content, recorded(st.ReadyToUse, st.Error, g.GetReadyToUse(),
		setOnce{"volumeGroupSnapshotHandle", st.VolumeGroupSnapshotHandle == nil, handle},
		setOnce{"creationTime", st.CreationTime == nil, metav1.NewTime(groupCreationTime(g))},
		setOnce{"volumeSnapshotInfoList", withMembers && len(st.VolumeSnapshotInfoList) == 0 && len(g.GetSnapshots()) > 0, memberInfo(g.GetSnapshots())}))
}

// memberInfo is status.volumeSnapshotInfoList as v1 defines it; the
// snapshot-controller makes one VolumeSnapshot and content per entry.
func memberInfo(snaps []*csi.Snapshot) []groupv1.VolumeSnapshotInfo {
	out := make([]groupv1.VolumeSnapshotInfo, 0, len(snaps))
	for _, s := range snaps {
		info := groupv1.VolumeSnapshotInfo{VolumeHandle: s.GetSourceVolumeId(), SnapshotHandle: s.GetSnapshotId(),
			ReadyToUse: new(s.GetReadyToUse())}
		if ts := s.GetCreationTime(); ts != nil {
			info.CreationTime = new(ts.AsTime().UnixNano())
		}
		if s.GetSizeBytes() > 0 {
			info.RestoreSize = new(s.GetSizeBytes())
		}
		out = append(out, info)
	}
	return out
}

// groupError is the error recorded in status, if any.
func groupError(content *groupv1.VolumeGroupSnapshotContent) *snapv1.VolumeSnapshotError {
	if content.Status == nil {
		return nil
	}
	return content.Status.Error
}
