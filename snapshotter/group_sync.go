package snapshotter

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	groupv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumegroupsnapshot/v1"
	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/internal/hub"
)

// The group path's object protocol, as csi-snapshotter and the
// snapshot-controller share it (external-snapshotter pkg/utils).
const (
	// AnnGroupBeingCreated is set while a CreateVolumeGroupSnapshot call may
	// be in flight; the snapshot-controller does not delete the content then.
	AnnGroupBeingCreated = "groupsnapshot.storage.kubernetes.io/volumegroupsnapshot-being-created"
	// AnnGroupBeingDeleted is set by the snapshot-controller when the content
	// may be deleted from the backend.
	AnnGroupBeingDeleted = "groupsnapshot.storage.kubernetes.io/volumegroupsnapshot-being-deleted"
	// GroupContentFinalizer protects a bound group content; removed here once
	// the backend group snapshot is dealt with.
	GroupContentFinalizer = "groupsnapshot.storage.kubernetes.io/volumegroupsnapshotcontent-bound-protection"
	// The secret for CreateVolumeGroupSnapshot and DeleteVolumeGroupSnapshot,
	// copied by the snapshot-controller from the class.
	AnnGroupDeletionSecretName      = "groupsnapshot.storage.kubernetes.io/deletion-secret-name"
	AnnGroupDeletionSecretNamespace = "groupsnapshot.storage.kubernetes.io/deletion-secret-namespace"

	// Added to CreateVolumeGroupSnapshot's parameters by --extra-create-metadata.
	ParamVolumeGroupSnapshotName        = csiParameterPrefix + "volumegroupsnapshot/name"
	ParamVolumeGroupSnapshotNamespace   = csiParameterPrefix + "volumegroupsnapshot/namespace"
	ParamVolumeGroupSnapshotContentName = csiParameterPrefix + "volumegroupsnapshotcontent/name"

	// Event reasons, as the sidecar emits them.
	ReasonGroupCreationFailed = "GroupSnapshotCreationFailed"
	ReasonGroupCheckFailed    = "GroupSnapshotContentCheckandUpdateFailed"
	ReasonGroupDeleteError    = "GroupSnapshotDeleteError"

	msgGroupCheckFailed = "Failed to check and update group snapshot content"
)

// syncGroup reconciles one VolumeGroupSnapshotContent, named by key.
func (c *Controller) syncGroup(ctx context.Context, key string) error {
	poll := "group/" + key
	cached, err := c.group.contents.Get(key)
	if apierrors.IsNotFound(err) {
		c.forgetPolls(poll)
		return nil
	}
	if err != nil {
		return err
	}
	if cached.Spec.Driver != c.d.Driver {
		return nil
	}
	content := cached.DeepCopy()
	ctx = klog.NewContext(ctx, klog.FromContext(ctx).WithValues("controller", Name, "groupSnapshotContent", key))
	klog.FromContext(ctx).V(5).Info("Syncing VolumeGroupSnapshotContent")

	if shouldDeleteGroup(content) {
		c.forgetPolls(poll)
		return c.syncGroupDelete(ctx, content)
	}
	src := content.Spec.Source
	switch {
	case len(src.VolumeHandles) != 0 && content.Status == nil:
		c.d.Steps.Trigger(ctx, "A VolumeGroupSnapshotContent asks for a group snapshot of "+strconv.Itoa(len(src.VolumeHandles))+" volumes: cut them together")
		content, err = c.createGroup(ctx, content, ReasonGroupCreationFailed, "Failed to create group snapshot")
	case groupReady(content):
		c.forgetPolls(poll)
		_, err = c.groups().removeBeingCreated(ctx, content)
		return err
	case src.GroupSnapshotHandles != nil:
		c.d.Steps.Trigger(ctx, "A pre-provisioned VolumeGroupSnapshotContent names group snapshot "+src.GroupSnapshotHandles.VolumeGroupSnapshotHandle+": ask the driver for its state")
		content, err = c.checkGroup(ctx, content)
	case content.Status.VolumeGroupSnapshotHandle != nil && len(content.Status.VolumeSnapshotInfoList) > 0:
		c.d.Steps.Trigger(ctx, "The group snapshot is not ready to use yet: ask the driver again")
		content, err = c.checkGroup(ctx, content)
	default:
		// CreateVolumeGroupSnapshot is idempotent by name, so the retry finds
		// a group the failed call may have cut.
		c.d.Steps.Trigger(ctx, "The last CreateVolumeGroupSnapshot failed: try again")
		content, err = c.createGroup(ctx, content, ReasonGroupCheckFailed, msgGroupCheckFailed)
	}
	if err != nil {
		return err
	}
	return c.settle(poll, shouldDeleteGroup(content), func() error { return c.syncGroupDelete(ctx, content) }, groupReady(content))
}

// shouldDeleteGroup: the content is being deleted and the backend group may go.
func shouldDeleteGroup(content *groupv1.VolumeGroupSnapshotContent) bool {
	unbound := content.Spec.Source.GroupSnapshotHandles != nil && content.Spec.VolumeGroupSnapshotRef.UID == ""
	return mayDelete(content, unbound, AnnGroupBeingCreated, AnnGroupBeingDeleted)
}

// createGroup calls CreateVolumeGroupSnapshot and records the group and its
// members in status; a failure is a Warning event and status.error.
func (c *Controller) createGroup(ctx context.Context, content *groupv1.VolumeGroupSnapshotContent, reason, what string) (*groupv1.VolumeGroupSnapshotContent, error) {
	return c.groups().reported(ctx, content, c.createGroupAndRecord, reason, what)
}

func (c *Controller) createGroupAndRecord(ctx context.Context, content *groupv1.VolumeGroupSnapshotContent) (*groupv1.VolumeGroupSnapshotContent, error) {
	req, err := c.createGroupRequest(ctx, content)
	if err != nil {
		return content, err
	}
	// Set only once the call is sure to be sent (see createAndRecord).
	if content, err = c.groups().setBeingCreated(ctx, content); err != nil {
		return content, err
	}
	content, rsp, err := createMarked(ctx, c.groups(), content, c.d.Timeout, "CreateVolumeGroupSnapshot", c.group.csi.CreateVolumeGroupSnapshot, req,
		fmt.Sprintf("failed to take group snapshot of the volumes %v", req.SourceVolumeIds))
	if err != nil {
		return content, err
	}
	g := rsp.GetGroupSnapshot()
	if g.GetGroupSnapshotId() == "" {
		return content, fmt.Errorf("driver returned an empty group_snapshot.group_snapshot_id for CreateVolumeGroupSnapshot %s", req.Name)
	}
	klog.FromContext(ctx).V(4).Info("CreateVolumeGroupSnapshot succeeded", "groupSnapshotName", req.Name,
		"groupSnapshotHandle", g.GetGroupSnapshotId(), "readyToUse", g.GetReadyToUse(), "members", len(g.GetSnapshots()))
	content, err = c.recordGroup(ctx, content, g.GetGroupSnapshotId(), g, true)
	if err != nil {
		return content, err
	}
	return c.groups().removeBeingCreated(ctx, content)
}

// createGroupRequest gathers CreateVolumeGroupSnapshot's inputs: the name
// from the VolumeGroupSnapshot UID, the volumes, the class parameters and the
// secret the snapshot-controller copied onto the content.
func (c *Controller) createGroupRequest(ctx context.Context, content *groupv1.VolumeGroupSnapshotContent) (*csi.CreateVolumeGroupSnapshotRequest, error) {
	if len(content.Spec.Source.VolumeHandles) == 0 {
		return nil, fmt.Errorf("VolumeGroupSnapshotContent %s has no spec.source.volumeHandles to snapshot", content.Name)
	}
	if content.Spec.VolumeGroupSnapshotClassName == nil {
		return nil, fmt.Errorf("VolumeGroupSnapshotContent %s has no spec.volumeGroupSnapshotClassName: a dynamic group snapshot needs a VolumeGroupSnapshotClass", content.Name)
	}
	class, err := c.group.classes.Get(*content.Spec.VolumeGroupSnapshotClassName)
	if err != nil {
		return nil, fmt.Errorf("VolumeGroupSnapshotClass %s of VolumeGroupSnapshotContent %s: %w", *content.Spec.VolumeGroupSnapshotClassName, content.Name, err)
	}
	uid := string(content.Spec.VolumeGroupSnapshotRef.UID)
	if uid == "" {
		return nil, fmt.Errorf("spec.volumeGroupSnapshotRef.uid is empty: the content is not bound to a VolumeGroupSnapshot")
	}
	name, err := prefixedName(c.cfg.GroupSnapshotNamePrefix, c.cfg.GroupSnapshotNameUUIDLength, uid, "--groupsnapshot-name-uuid-length", "VolumeGroupSnapshot")
	if err != nil {
		return nil, err
	}
	params, err := driverParameters("VolumeGroupSnapshotClass "+class.Name, class.Parameters)
	if err != nil {
		return nil, err
	}
	if c.cfg.extraCreateMetadata() {
		params[ParamVolumeGroupSnapshotName] = content.Spec.VolumeGroupSnapshotRef.Name
		params[ParamVolumeGroupSnapshotNamespace] = content.Spec.VolumeGroupSnapshotRef.Namespace
		params[ParamVolumeGroupSnapshotContentName] = content.Name
	}
	secrets, err := c.groupSecrets(ctx, content)
	if err != nil {
		return nil, err
	}
	return &csi.CreateVolumeGroupSnapshotRequest{Name: name, SourceVolumeIds: content.Spec.Source.VolumeHandles,
		Parameters: params, Secrets: secrets}, nil
}

func (c *Controller) groupSecrets(ctx context.Context, content *groupv1.VolumeGroupSnapshotContent) (map[string]string, error) {
	ref, err := annotatedSecretRef(content.Annotations, AnnGroupDeletionSecretName, AnnGroupDeletionSecretNamespace)
	if err != nil {
		return nil, err
	}
	return hub.ReadSecret(ctx, c.d.Kube, ref)
}

// checkGroup asks GetVolumeGroupSnapshot for the state of a group whose
// handle is known: a pre-provisioned one, or one being polled until ready.
func (c *Controller) checkGroup(ctx context.Context, content *groupv1.VolumeGroupSnapshotContent) (*groupv1.VolumeGroupSnapshotContent, error) {
	return c.groups().reported(ctx, content, c.getGroupAndRecord, ReasonGroupCheckFailed, msgGroupCheckFailed)
}

func (c *Controller) getGroupAndRecord(ctx context.Context, content *groupv1.VolumeGroupSnapshotContent) (*groupv1.VolumeGroupSnapshotContent, error) {
	handle, ids := groupHandles(content)
	if len(ids) == 0 {
		return content, fmt.Errorf("cannot get group snapshot %s of VolumeGroupSnapshotContent %s: no member snapshots known", handle, content.Name)
	}
	var secrets map[string]string
	if name := content.Spec.VolumeGroupSnapshotClassName; name != nil {
		class, err := c.group.classes.Get(*name)
		if err != nil {
			return content, fmt.Errorf("VolumeGroupSnapshotClass %s of VolumeGroupSnapshotContent %s: %w", *name, content.Name, err)
		}
		ref, err := classSecretRef("VolumeGroupSnapshotClass "+class.Name, class.Parameters, paramGroupSnapshotterGetSecretName,
			paramGroupSnapshotterGetSecretNamespace, map[string]string{"volumegroupsnapshotcontent.name": content.Name})
		if err != nil {
			return content, err
		}
		if secrets, err = hub.ReadSecret(ctx, c.d.Kube, ref); err != nil {
			return content, err
		}
	}
	cctx, cancel := context.WithTimeout(ctx, c.d.Timeout)
	defer cancel()
	rsp, err := c.group.csi.GetVolumeGroupSnapshot(cctx, &csi.GetVolumeGroupSnapshotRequest{GroupSnapshotId: handle, SnapshotIds: ids, Secrets: secrets})
	if err != nil {
		return content, fmt.Errorf("failed to get group snapshot %s: %w", handle, err)
	}
	// As the sidecar does, a pre-provisioned content gets no member list: its
	// members are named in its spec.
	return c.recordGroup(ctx, content, handle, rsp.GetGroupSnapshot(), content.Spec.Source.GroupSnapshotHandles == nil)
}

// groupHandles: the group and member handles the backend knows the content by.
func groupHandles(content *groupv1.VolumeGroupSnapshotContent) (string, []string) {
	if h := content.Spec.Source.GroupSnapshotHandles; h != nil {
		return h.VolumeGroupSnapshotHandle, h.VolumeSnapshotHandles
	}
	var handle string
	var ids []string
	if st := content.Status; st != nil {
		if st.VolumeGroupSnapshotHandle != nil {
			handle = *st.VolumeGroupSnapshotHandle
		}
		for _, m := range st.VolumeSnapshotInfoList {
			ids = append(ids, m.SnapshotHandle)
		}
	}
	return handle, ids
}

// syncGroupDelete: with deletionPolicy Delete the backend group and its
// members are deleted first; then (also for Retain) the finalizer goes.
func (c *Controller) syncGroupDelete(ctx context.Context, content *groupv1.VolumeGroupSnapshotContent) error {
	st := content.Status
	if content.Spec.DeletionPolicy == snapv1.VolumeSnapshotContentDelete && st != nil && st.VolumeGroupSnapshotHandle != nil {
		c.d.Steps.Trigger(ctx, "The VolumeGroupSnapshotContent is being deleted with deletionPolicy Delete: delete group snapshot "+*st.VolumeGroupSnapshotHandle+" and its members in the backend")
		var err error
		if content, err = c.deleteBackendGroup(ctx, content); err != nil {
			return err
		}
	} else if content.Spec.DeletionPolicy == snapv1.VolumeSnapshotContentRetain {
		c.d.Steps.Trigger(ctx, "The VolumeGroupSnapshotContent is being deleted with deletionPolicy Retain: keep the backend group snapshot, release the object")
	}
	return c.groups().removeFinalizer(ctx, content)
}

func (c *Controller) deleteBackendGroup(ctx context.Context, content *groupv1.VolumeGroupSnapshotContent) (*groupv1.VolumeGroupSnapshotContent, error) {
	secrets, err := c.groupSecrets(ctx, content)
	if err != nil {
		c.groups().warn(content, ReasonGroupDeleteError, "Failed to get snapshot credentials")
		return content, fmt.Errorf("getting the secret to delete the group snapshot of VolumeGroupSnapshotContent %s: %w", content.Name, err)
	}
	handle := *content.Status.VolumeGroupSnapshotHandle
	_, ids := groupHandles(content)
	if len(ids) == 0 && content.Spec.Source.GroupSnapshotHandles != nil {
		ids = content.Spec.Source.GroupSnapshotHandles.VolumeSnapshotHandles
	}
	if len(ids) == 0 {
		c.groups().warn(content, ReasonGroupDeleteError, "Failed to delete group snapshot")
		return content, fmt.Errorf("cannot delete group snapshot %s of VolumeGroupSnapshotContent %s: no member snapshots known", handle, content.Name)
	}
	cctx, cancel := context.WithTimeout(ctx, c.d.Timeout)
	defer cancel()
	if _, err := c.group.csi.DeleteVolumeGroupSnapshot(cctx, &csi.DeleteVolumeGroupSnapshotRequest{GroupSnapshotId: handle, SnapshotIds: ids, Secrets: secrets}); err != nil {
		c.groups().warn(content, ReasonGroupDeleteError, "Failed to delete group snapshot")
		return content, fmt.Errorf("failed to delete group snapshot %s of VolumeGroupSnapshotContent %s: %w", handle, content.Name, err)
	}
	klog.FromContext(ctx).V(4).Info("DeleteVolumeGroupSnapshot succeeded", "groupSnapshotHandle", handle, "members", len(ids))
	updated, err := c.groups().clearStatus(ctx, content)
	if err != nil {
		c.groups().warn(content, ReasonGroupDeleteError, "Failed to clear content status")
		return content, err
	}
	return updated, nil
}

// groupCreationTime is the group's creation time, now when the driver did not say.
func groupCreationTime(g *csi.VolumeGroupSnapshot) time.Time {
	if ts := g.GetCreationTime(); ts != nil && (ts.GetSeconds() != 0 || ts.GetNanos() != 0) {
		return ts.AsTime()
	}
	return time.Now()
}
