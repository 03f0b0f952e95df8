package snapshotter

import (
	"context"
	"fmt"

	"github.com/container-storage-interface/spec/lib/go/csi"
	groupv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumegroupsnapshot/v1"
	grouplisters "github.com/kubernetes-csi/external-snapshotter/client/v8/listers/volumegroupsnapshot/v1"
	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/internal/hub"
)

// groupKind names group contents in the step record and logs.
const groupKind = "VolumeGroupSnapshotContent"

// groupPath is the sidecar's group snapshot job: VolumeGroupSnapshotContents
// of this driver become CreateVolumeGroupSnapshot, GetVolumeGroupSnapshot and
// DeleteVolumeGroupSnapshot calls. It runs inside the snapshotter when the
// driver serves the GroupController service, on the snapshotter's queue
// settings, client and informer factory.
type groupPath struct {
	csi      csi.GroupControllerClient
	queue    hub.Queue
	contents grouplisters.VolumeGroupSnapshotContentLister
	classes  grouplisters.VolumeGroupSnapshotClassLister
}

// runGroups waits for the group snapshot CRDs, then processes group contents
// until ctx ends. A driver without CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT
// gets no group path, as the sidecar warns and does nothing for it.
func (c *Controller) runGroups(ctx context.Context) {
	defer c.group.queue.ShutDown()
	cctx, cancel := context.WithTimeout(ctx, c.d.Timeout)
	rsp, err := c.group.csi.GroupControllerGetCapabilities(cctx, &csi.GroupControllerGetCapabilitiesRequest{})
	cancel()
	if err != nil {
		klog.ErrorS(err, "GroupControllerGetCapabilities failed; group snapshots are off", "driver", c.d.Driver)
		return
	}
	supported := false
	for _, cp := range rsp.GetCapabilities() {
		supported = supported || cp.GetRpc().GetType() == csi.GroupControllerServiceCapability_RPC_CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT
	}
	if !supported {
		klog.InfoS("Driver serves the GroupController service without CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT; group snapshots are off", "driver", c.d.Driver)
		return
	}
	if err := c.d.Snapshots.WaitGroupReady(ctx, c.registerGroupInformers); err != nil {
		if ctx.Err() == nil {
			klog.ErrorS(err, "Group snapshotter cannot start")
		}
		return
	}
	klog.InfoS("Starting group snapshotter", "driver", c.d.Driver, "workers", c.d.Workers,
		"groupSnapshotNamePrefix", c.cfg.GroupSnapshotNamePrefix)
	hub.RunWorkers(ctx, Name, groupKind, c.group.queue, c.d.Workers, c.syncGroup)
}

// registerGroupInformers obtains the group informers from the shared factory;
// called only once the group CRDs are served.
func (c *Controller) registerGroupInformers() error {
	inf := c.d.Snapshots.Informers.Groupsnapshot().V1()
	c.group.contents = inf.VolumeGroupSnapshotContents().Lister()
	c.group.classes = inf.VolumeGroupSnapshotClasses().Lister()
	_, err := inf.VolumeGroupSnapshotContents().Informer().AddEventHandler(contentHandler(c.enqueueGroup, groupChangeNeedsSync))
	if err != nil {
		return fmt.Errorf("watching VolumeGroupSnapshotContents: %w", err)
	}
	inf.VolumeGroupSnapshotClasses().Informer()
	return nil
}

func (c *Controller) enqueueGroup(obj any) {
	enqueueContent(c, c.group.queue, obj, func(content *groupv1.VolumeGroupSnapshotContent) string { return content.Spec.Driver })
}

// groupChangeNeedsSync filters out the controller's own writes, as
// changeNeedsSync does for single contents.
func groupChangeNeedsSync(old, cur *groupv1.VolumeGroupSnapshotContent) bool {
	return needsSync(old, cur, groupReady, AnnGroupBeingCreated, func(cur, old *groupv1.VolumeGroupSnapshotContent) *groupv1.VolumeGroupSnapshotContent {
		out := cur.DeepCopy()
		out.Status = old.Status
		return out
	})
}

func groupReady(content *groupv1.VolumeGroupSnapshotContent) bool {
	return content.Status != nil && content.Status.ReadyToUse != nil && *content.Status.ReadyToUse
}
