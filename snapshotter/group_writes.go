package snapshotter

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	groupv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumegroupsnapshot/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
)

// Group content writes are JSON merge patches of just the fields that
// change, as for single contents (writes.go).

func (c *Controller) groupPatch(ctx context.Context, content *groupv1.VolumeGroupSnapshotContent, body map[string]any, subresources ...string) (*groupv1.VolumeGroupSnapshotContent, error) {
	data, err := json.Marshal(body)
	if err != nil {
		return content, err
	}
	updated, err := c.snapClient().GroupsnapshotV1().VolumeGroupSnapshotContents().Patch(ctx, content.Name, types.MergePatchType, data, metav1.PatchOptions{}, subresources...)
	if err != nil {
		return content, fmt.Errorf("updating VolumeGroupSnapshotContent %s: %w", content.Name, err)
	}
	return updated, nil
}

func (c *Controller) setGroupBeingCreated(ctx context.Context, content *groupv1.VolumeGroupSnapshotContent) (*groupv1.VolumeGroupSnapshotContent, error) {
	if _, ok := content.Annotations[AnnGroupBeingCreated]; ok {
		return content, nil
	}
	return c.groupPatch(ctx, content, map[string]any{"metadata": map[string]any{
		"annotations": map[string]any{AnnGroupBeingCreated: "yes"}}})
}

func (c *Controller) removeGroupBeingCreated(ctx context.Context, content *groupv1.VolumeGroupSnapshotContent) (*groupv1.VolumeGroupSnapshotContent, error) {
	if _, ok := content.Annotations[AnnGroupBeingCreated]; !ok {
		return content, nil
	}
	return c.groupPatch(ctx, content, map[string]any{"metadata": map[string]any{
		"annotations": map[string]any{AnnGroupBeingCreated: nil}}})
}

// recordGroup writes what the driver said into status: the handle, creation
// time and (withMembers) the member list are set once; readiness follows the
// driver, and becoming ready clears an earlier error.
func (c *Controller) recordGroup(ctx context.Context, content *groupv1.VolumeGroupSnapshotContent, handle string, g *csi.VolumeGroupSnapshot, withMembers bool) (*groupv1.VolumeGroupSnapshotContent, error) {
	st := content.Status
	if st == nil {
		st = &groupv1.VolumeGroupSnapshotContentStatus{}
	}
	changes := map[string]any{}
	if st.VolumeGroupSnapshotHandle == nil {
		changes["volumeGroupSnapshotHandle"] = handle
	}
	if st.CreationTime == nil {
		changes["creationTime"] = metav1.NewTime(groupCreationTime(g))
	}
	ready := g.GetReadyToUse()
	if st.ReadyToUse == nil || *st.ReadyToUse != ready {
		changes["readyToUse"] = ready
		if ready && st.Error != nil {
			changes["error"] = nil
		}
	}
	if withMembers && len(st.VolumeSnapshotInfoList) == 0 && len(g.GetSnapshots()) > 0 {
		changes["volumeSnapshotInfoList"] = memberInfo(g.GetSnapshots())
	}
	if len(changes) == 0 {
		return content, nil
	}
	return c.groupPatch(ctx, content, map[string]any{"status": changes}, "status")
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

// recordGroupError reports a failure in status.error (readyToUse false) and
// as a Warning event, even when the status write fails; a repeat of the
// error already recorded is not reported again.
func (c *Controller) recordGroupError(ctx context.Context, content *groupv1.VolumeGroupSnapshotContent, reason, message string) {
	if st := content.Status; st != nil && st.Error != nil && st.Error.Message != nil && *st.Error.Message == message {
		return
	}
	updated, err := c.groupPatch(ctx, content, map[string]any{"status": map[string]any{
		"readyToUse": false,
		"error":      map[string]any{"time": metav1.NewTime(time.Now()), "message": message},
	}}, "status")
	c.warnGroup(updated, reason, message)
	if err != nil {
		klog.FromContext(ctx).V(2).Info("Could not record the error in VolumeGroupSnapshotContent status", "err", err)
	}
}

// clearGroupStatus forgets the deleted backend group.
func (c *Controller) clearGroupStatus(ctx context.Context, content *groupv1.VolumeGroupSnapshotContent) (*groupv1.VolumeGroupSnapshotContent, error) {
	return c.groupPatch(ctx, content, map[string]any{"status": map[string]any{
		"volumeGroupSnapshotHandle": nil, "readyToUse": nil, "creationTime": nil, "error": nil,
	}}, "status")
}

func (c *Controller) removeGroupFinalizer(ctx context.Context, content *groupv1.VolumeGroupSnapshotContent) error {
	if !slices.Contains(content.Finalizers, GroupContentFinalizer) {
		return nil
	}
	rest := slices.DeleteFunc(slices.Clone(content.Finalizers), func(f string) bool { return f == GroupContentFinalizer })
	if rest == nil {
		rest = []string{}
	}
	_, err := c.groupPatch(ctx, content, map[string]any{"metadata": map[string]any{
		"finalizers": rest, "resourceVersion": content.ResourceVersion}})
	return err
}

func (c *Controller) warnGroup(content *groupv1.VolumeGroupSnapshotContent, reason, message string) {
	c.events.Event(content, v1.EventTypeWarning, reason, message)
}
