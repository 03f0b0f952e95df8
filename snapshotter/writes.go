package snapshotter

import (
	"context"

	"github.com/container-storage-interface/spec/lib/go/csi"
	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
)

// Writes follow internal/edit: merge patches of just the fields that change,
// no read before write, never undoing a field another controller just set.
// What both content kinds write alike is in kind.go.

// recordSnapshot writes what the driver said into status. Handle, creation
// time and restore size are set once; readiness follows the driver, and
// becoming ready clears an earlier error.
func (c *Controller) recordSnapshot(ctx context.Context, content *snapv1.VolumeSnapshotContent, handle string, snap *csi.Snapshot) (*snapv1.VolumeSnapshotContent, error) {
	st := content.Status
	if st == nil {
		st = &snapv1.VolumeSnapshotContentStatus{}
	}
	return c.single().status(ctx, content, recorded(st.ReadyToUse, st.Error, snap.GetReadyToUse(),
		setOnce{"snapshotHandle", st.SnapshotHandle == nil, handle},
		setOnce{"creationTime", st.CreationTime == nil, creationTime(snap)},
		setOnce{"restoreSize", st.RestoreSize == nil && snap.GetSizeBytes() > 0, snap.GetSizeBytes()}))
}

// setOnce is a status field that records what the driver said only while
// it is unset.
type setOnce struct {
	key   string
	unset bool
	value any
}

// recorded is the status change that records what the driver said, for
// either kind: readyToUse follows the driver (becoming ready clears lastErr,
// an earlier error), and each field of once that is unset is set.
func recorded(have *bool, lastErr *snapv1.VolumeSnapshotError, ready bool, once ...setOnce) map[string]any {
	changes := map[string]any{}
	if have == nil || *have != ready {
		changes["readyToUse"] = ready
		if ready && lastErr != nil {
			changes["error"] = nil
		}
	}
	for _, f := range once {
		if f.unset {
			changes[f.key] = f.value
		}
	}
	return changes
}

// snapshotError is the error recorded in status, if any.
func snapshotError(content *snapv1.VolumeSnapshotContent) *snapv1.VolumeSnapshotError {
	if content.Status == nil {
		return nil
	}
	return content.Status.Error
}
