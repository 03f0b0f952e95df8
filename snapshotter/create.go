package snapshotter

import (
	"context"
	"fmt"
	"time"

	"github.com/csi-hub/csi-hub/internal/csiconn"
	"github.com/csi-hub/csi-hub/internal/hub"

	"github.com/container-storage-interface/spec/lib/go/csi"
	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"google.golang.org/grpc"
	v1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
)

// Event reasons, as the csi-snapshotter sidecar emits them.
const (
	ReasonCreationFailed = "SnapshotCreationFailed"
	ReasonCheckFailed    = "SnapshotContentCheckandUpdateFailed"
	ReasonDeleteError    = "SnapshotDeleteError"
)

// create calls CreateSnapshot for a dynamically provisioned content without
// status yet, and records the result. A failure is reported as a Warning
// event and in status.error.
func (c *Controller) create(ctx context.Context, content *snapv1.VolumeSnapshotContent) (*snapv1.VolumeSnapshotContent, error) {
	return c.single().reported(ctx, content, c.createAndRecord, ReasonCreationFailed, "Failed to create snapshot")
}

// recheck calls CreateSnapshot again for a dynamic content that has a status
// but is not ready (a poll, or a retry after a failure). Its failures are
// reported under the sidecar's check-and-update reason, as the sidecar does.
func (c *Controller) recheck(ctx context.Context, content *snapv1.VolumeSnapshotContent) (*snapv1.VolumeSnapshotContent, error) {
	return c.single().reported(ctx, content, c.createAndRecord, ReasonCheckFailed, msgCheckFailed)
}

// msgCheckFailed begins the message of a failed check, as the sidecar words it.
const msgCheckFailed = "Failed to check and update snapshot content"

func (c *Controller) createAndRecord(ctx context.Context, content *snapv1.VolumeSnapshotContent) (*snapv1.VolumeSnapshotContent, error) {
	req, err := c.createRequest(ctx, content)
	if err != nil {
		return content, err
	}
	// Everything that can fail before the call is checked above, so the
	// annotation only ever marks a call that was really sent. Once the handle
	// is in status the snapshot can no longer leak (deletion deletes that
	// handle, and the name makes every later call return the same snapshot),
	// so readiness polls skip the mark: two writes fewer per poll than the
	// sidecar, same protocol.
	if content.Status == nil || content.Status.SnapshotHandle == nil {
		if content, err = c.single().setBeingCreated(ctx, content); err != nil {
			return content, err
		}
	}
	content, rsp, err := createMarked(ctx, c.single(), content, c.d.Timeout, "CreateSnapshot", c.d.CSI.CreateSnapshot, req,
		"failed to take snapshot of the volume "+req.SourceVolumeId)
	if err != nil {
		return content, err
	}
	snap := rsp.GetSnapshot()
	if snap.GetSnapshotId() == "" {
		return content, fmt.Errorf("driver returned an empty snapshot.snapshot_id for CreateSnapshot %s", req.Name)
	}
	klog.FromContext(ctx).V(4).Info("CreateSnapshot succeeded", "content", content.Name, "snapshotName", req.Name,
		"snapshotHandle", snap.GetSnapshotId(), "readyToUse", snap.GetReadyToUse(), "size", snap.GetSizeBytes())
	content, err = c.recordSnapshot(ctx, content, snap.GetSnapshotId(), snap)
	if err != nil {
		return content, err
	}
	return c.single().removeBeingCreated(ctx, content)
}

// createRequest gathers CreateSnapshot's inputs: name, source volume, class
// parameters and the snapshotter secret.
func (c *Controller) createRequest(ctx context.Context, content *snapv1.VolumeSnapshotContent) (*csi.CreateSnapshotRequest, error) {
	if content.Spec.VolumeSnapshotClassName == nil {
		return nil, fmt.Errorf("VolumeSnapshotContent %s has no spec.volumeSnapshotClassName: a dynamic snapshot needs a VolumeSnapshotClass", content.Name)
	}
	class, err := c.classes.Get(*content.Spec.VolumeSnapshotClassName)
	if err != nil {
		return nil, fmt.Errorf("VolumeSnapshotClass %s of VolumeSnapshotContent %s: %w", *content.Spec.VolumeSnapshotClassName, content.Name, err)
	}
	name, err := snapshotName(c.cfg.SnapshotNamePrefix, c.cfg.SnapshotNameUUIDLength, string(content.Spec.VolumeSnapshotRef.UID))
	if err != nil {
		return nil, err
	}
	params, err := createParameters(class, content, c.cfg.extraCreateMetadata())
	if err != nil {
		return nil, err
	}
	ref, err := snapshotterSecretRef(content)
	if err != nil {
		return nil, err
	}
	secrets, err := hub.ReadSecret(ctx, c.d.Kube, ref)
	if err != nil {
		return nil, err
	}
	return &csi.CreateSnapshotRequest{
		SourceVolumeId: *content.Spec.Source.VolumeHandle,
		Name:           name,
		Parameters:     params,
		Secrets:        secrets,
	}, nil
}

// checkExisting fills the status of a pre-provisioned content from
// ListSnapshots. A driver without LIST_SNAPSHOTS cannot be asked, and its
// snapshot is taken as ready, as the sidecar does.
func (c *Controller) checkExisting(ctx context.Context, content *snapv1.VolumeSnapshotContent) (*snapv1.VolumeSnapshotContent, error) {
	return c.single().reported(ctx, content, c.listAndRecord, ReasonCheckFailed, msgCheckFailed)
}

func (c *Controller) listAndRecord(ctx context.Context, content *snapv1.VolumeSnapshotContent) (*snapv1.VolumeSnapshotContent, error) {
	return c.lookUpAndRecord(ctx, content, *content.Spec.Source.SnapshotHandle, "spec.source.snapshotHandle", func() (*v1.SecretReference, error) {
		name := content.Spec.VolumeSnapshotClassName
		if name == nil {
			return nil, nil
		}
		class, err := c.classes.Get(*name)
		if err != nil {
			return nil, fmt.Errorf("VolumeSnapshotClass %s of VolumeSnapshotContent %s: %w", *name, content.Name, err)
		}
		return listSecretRef(class, content.Name)
	})
}

// lookUpAndRecord asks the driver for the snapshot with handle (ListSnapshots,
// with the secret secretRef names) and records it; field names where the
// handle came from, for the error. A driver without LIST_SNAPSHOTS cannot be
// asked, and the snapshot is taken as ready, as the sidecar does.
func (c *Controller) lookUpAndRecord(ctx context.Context, content *snapv1.VolumeSnapshotContent, handle, field string,
	secretRef func() (*v1.SecretReference, error)) (*snapv1.VolumeSnapshotContent, error) {
	if !c.d.Caps.Has(csi.ControllerServiceCapability_RPC_LIST_SNAPSHOTS) {
		return c.recordSnapshot(ctx, content, handle, &csi.Snapshot{SnapshotId: handle, ReadyToUse: true})
	}
	ref, err := secretRef()
	if err != nil {
		return content, err
	}
	secrets, err := hub.ReadSecret(ctx, c.d.Kube, ref)
	if err != nil {
		return content, err
	}
	cctx, cancel := context.WithTimeout(ctx, c.d.Timeout)
	defer cancel()
	rsp, err := c.d.CSI.ListSnapshots(cctx, &csi.ListSnapshotsRequest{SnapshotId: handle, Secrets: secrets})
	if err != nil {
		return content, fmt.Errorf("failed to list snapshot %s: %w", handle, err)
	}
	for _, e := range rsp.GetEntries() {
		if e.GetSnapshot().GetSnapshotId() == handle {
			return c.recordSnapshot(ctx, content, handle, e.GetSnapshot())
		}
	}
	return content, fmt.Errorf("ListSnapshots found no snapshot with snapshot_id %q (%s)", handle, field)
}

// creationTime is the snapshot's creation time in Unix nanoseconds, now when
// the driver did not say.
func creationTime(snap *csi.Snapshot) int64 {
	if ts := snap.GetCreationTime(); ts != nil && (ts.GetSeconds() != 0 || ts.GetNanos() != 0) {
		return ts.AsTime().UnixNano()
	}
	return time.Now().UnixNano()
}

// createMarked sends a create call (call with req) for a content that kind's
// being-created mark protects, failed naming what was asked. When the
// driver's error is final nothing is being cut, so the mark goes and deletion
// may proceed; otherwise it stays until a retry learns the outcome.
func createMarked[T contentObject, Q, R any](ctx context.Context, kind contentKind[T], content T, timeout time.Duration,
	rpc string, call func(context.Context, Q, ...grpc.CallOption) (R, error), req Q, failed string) (T, R, error) {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	rsp, err := call(cctx, req)
	if err == nil {
		return content, rsp, nil
	}
	if csiconn.Final(err) {
		updated, rmErr := kind.removeBeingCreated(ctx, content)
		if rmErr != nil {
			return updated, rsp, fmt.Errorf("%s failed (%v), and removing annotation %s failed: %w", rpc, err, kind.beingCreated, rmErr)
		}
		content = updated
	}
	return content, rsp, fmt.Errorf("%s: %w", failed, err)
}
