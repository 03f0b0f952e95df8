package plugin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/plugin/transport/loop"
)

// NodeStageVolume implements csi.NodeServer: attach the device, prove it is the
// volume, format it only if blank, and mount it at the staging path. A raw
// block volume is only attached; the record remembers its device.
func (n *NodeServer) NodeStageVolume(ctx context.Context, req *csi.NodeStageVolumeRequest) (*csi.NodeStageVolumeResponse, error) {
	volumeID := req.GetVolumeId()
	if err := requireVolumeID(volumeID); err != nil {
		return nil, err
	}
	if err := requirePath("staging_target_path", req.GetStagingTargetPath()); err != nil {
		return nil, err
	}
	staging := filepath.Clean(req.GetStagingTargetPath())
	vcap, err := parseNodeCapability(req.GetVolumeCapability())
	if err != nil {
		return nil, err
	}
	var mkfsArgs []string
	if !vcap.block {
		if mkfsArgs, err = mkfsOptions(vcap.fsType, req.GetVolumeContext()); err != nil {
			return nil, err
		}
	}
	release, err := n.lock(volumeID)
	if err != nil {
		return nil, err
	}
	defer release()
	pc, err := n.stagePublishContext(ctx, volumeID, req.GetPublishContext())
	if err != nil {
		return nil, err
	}

	rec, err := n.records.load(volumeID)
	switch {
	case err == nil:
		if rec.StagingPath != staging {
			return nil, errorf(codes.FailedPrecondition, "volume %s is already staged at %s; unstage it before staging it at %s", volumeID, rec.StagingPath, staging)
		}
		if rec.Block != vcap.block || rec.FsType != vcap.fsType || rec.ReadOnly != vcap.readerOnly {
			return nil, errorf(codes.AlreadyExists, "volume %s is staged at %s as %s; volume_capability asks for %s",
				volumeID, staging, describeStaging(rec.Block, rec.FsType, rec.ReadOnly), describeStaging(vcap.block, vcap.fsType, vcap.readerOnly))
		}
		problem := n.stagingProblem(ctx, rec)
		if problem == "" {
			return &csi.NodeStageVolumeResponse{}, nil
		}
		// A stale record (the node rebooted, someone detached the device):
		// stage again, reusing what is still there.
		klog.InfoS("Restaging volume", "volumeID", volumeID, "reason", problem)
	case errors.Is(err, errNoRecord):
	default:
		return nil, errorf(codes.Internal, "volume %s: %v", volumeID, err)
	}

	if !vcap.block {
		if mounted, err := n.isMountPoint(staging); err != nil {
			return nil, errorf(codes.Internal, "staging_target_path %s: %v", staging, err)
		} else if mounted && !n.mountedFrom(ctx, volumeID, pc, staging) {
			return nil, errorf(codes.AlreadyExists, "staging_target_path %s already has another filesystem mounted, not volume %s", staging, volumeID)
		}
	}

	previous, err := n.cfg.Initiator.Device(ctx, volumeID, pc)
	if err != nil {
		return nil, transportError(err, "volume "+volumeID)
	}
	dev, err := n.cfg.Initiator.Attach(ctx, volumeID, pc)
	if err != nil {
		return nil, transportError(err, "attach volume "+volumeID)
	}
	rec = &nodeRecord{VolumeID: volumeID, StagingPath: staging, Block: vcap.block, FsType: vcap.fsType,
		ReadOnly: vcap.readerOnly, MountFlags: vcap.mountFlags, Device: dev, PublishContext: pc, Targets: map[string]publishedTarget{}}
	// Record before touching the device so an interrupted stage can be undone.
	if err := n.records.save(rec); err != nil {
		n.undoAttach(ctx, volumeID, pc, previous)
		return nil, errorf(codes.Internal, "volume %s: save node record: %v", volumeID, err)
	}
	if vcap.block {
		klog.InfoS("Staged block volume", "volumeID", volumeID, "device", dev)
		return &csi.NodeStageVolumeResponse{}, nil
	}
	if err := n.formatAndMount(volumeID, dev, staging, vcap, mkfsArgs); err != nil {
		n.undoAttach(ctx, volumeID, pc, previous)
		return nil, err
	}
	n.growAtStage(rec)
	klog.InfoS("Staged volume", "volumeID", volumeID, "device", dev, "fsType", vcap.fsType, "stagingPath", staging)
	return &csi.NodeStageVolumeResponse{}, nil
}

// formatAndMount formats dev only when it is blank and mounts it at staging.
// An existing filesystem of another type is never reformatted.
func (n *NodeServer) formatAndMount(volumeID, dev, staging string, vcap nodeCapability, mkfsArgs []string) error {
	if mounted, err := n.isMountPoint(staging); err != nil {
		return errorf(codes.Internal, "staging_target_path %s: %v", staging, err)
	} else if mounted {
		return nil // adopted: it is this volume's device, checked by the caller
	}
	existing, err := n.mounter.GetDiskFormat(dev)
	if err != nil {
		return errorf(codes.Internal, "volume %s: probe filesystem on %s: %v", volumeID, dev, err)
	}
	switch {
	case existing == "" && vcap.readerOnly:
		return errorf(codes.FailedPrecondition, "volume %s is blank and the access mode is read-only: it cannot be formatted", volumeID)
	case existing != "" && existing != vcap.fsType:
		return errorf(codes.FailedPrecondition, "volume %s already holds %s; volume_capability.mount.fs_type asks for %s: refusing to reformat or mount it",
			volumeID, existing, vcap.fsType)
	}
	if err := os.MkdirAll(staging, 0o750); err != nil {
		return errorf(codes.Internal, "staging_target_path %s: %v", staging, err)
	}
	opts := stagingMountOptions(vcap.mountFlags, vcap.readerOnly)
	if vcap.fsType == "xfs" && !slices.Contains(opts, "nouuid") {
		// A clone or restored snapshot carries its source's UUID, and XFS
		// refuses a second mount of a UUID without nouuid (as EBS and GCE PD
		// drivers mount xfs).
		opts = append(opts, "nouuid")
	}
	if err := n.mounter.FormatAndMountSensitiveWithFormatOptions(dev, staging, vcap.fsType, opts, nil, mkfsArgs); err != nil {
		return errorf(codes.Internal, "volume %s: format and mount %s at %s: %v", volumeID, dev, staging, err)
	}
	return nil
}

// undoAttach rolls back a failed stage: it detaches the device only if this
// stage attached it, and then forgets the volume.
func (n *NodeServer) undoAttach(ctx context.Context, volumeID string, pc map[string]string, previous string) {
	if previous != "" {
		return // it was attached before this call; the record still describes it
	}
	if err := n.cfg.Initiator.Detach(ctx, volumeID, pc); err != nil {
		klog.ErrorS(err, "Rollback: detach failed; the record is kept so NodeUnstageVolume can retry", "volumeID", volumeID)
		return
	}
	if err := n.records.remove(volumeID); err != nil {
		klog.ErrorS(err, "Rollback: remove node record", "volumeID", volumeID)
	}
}

// NodeUnstageVolume implements csi.NodeServer: unmount the staging path and
// detach the device. Refused while the volume is still published.
func (n *NodeServer) NodeUnstageVolume(ctx context.Context, req *csi.NodeUnstageVolumeRequest) (*csi.NodeUnstageVolumeResponse, error) {
	volumeID := req.GetVolumeId()
	if err := requireVolumeID(volumeID); err != nil {
		return nil, err
	}
	if err := requirePath("staging_target_path", req.GetStagingTargetPath()); err != nil {
		return nil, err
	}
	staging := filepath.Clean(req.GetStagingTargetPath())
	release, err := n.lock(volumeID)
	if err != nil {
		return nil, err
	}
	defer release()

	rec, err := n.records.load(volumeID)
	if errors.Is(err, errNoRecord) {
		return &csi.NodeUnstageVolumeResponse{}, n.unstageWithoutRecord(volumeID, staging)
	}
	if err != nil {
		return nil, errorf(codes.Internal, "volume %s: %v", volumeID, err)
	}
	if rec.StagingPath != staging {
		klog.InfoS("Volume is not staged at this path; nothing to do", "volumeID", volumeID, "stagingPath", staging, "stagedAt", rec.StagingPath)
		return &csi.NodeUnstageVolumeResponse{}, nil
	}
	for target := range rec.Targets {
		if mounted, err := n.isMountPoint(target); err != nil {
			return nil, errorf(codes.Internal, "volume %s: check target %s: %v", volumeID, target, err)
		} else if mounted {
			return nil, errorf(codes.FailedPrecondition, "volume %s is still published at %s: NodeUnpublishVolume first", volumeID, target)
		}
	}
	if !rec.Block {
		if err := n.unmountAll(staging); err != nil {
			return nil, errorf(codes.Internal, "volume %s: unmount %s: %v", volumeID, staging, err)
		}
	}
	if err := n.cfg.Initiator.Detach(ctx, volumeID, rec.PublishContext); err != nil {
		return nil, transportError(err, "detach volume "+volumeID)
	}
	if err := n.records.remove(volumeID); err != nil {
		return nil, errorf(codes.Internal, "volume %s: remove node record: %v", volumeID, err)
	}
	klog.InfoS("Unstaged volume", "volumeID", volumeID, "stagingPath", staging)
	return &csi.NodeUnstageVolumeResponse{}, nil
}

// unstageWithoutRecord handles a volume the node has no record of: nothing to
// detach that could be proven to be it. A leftover mount at the staging path is
// removed unless another volume's record claims that path.
func (n *NodeServer) unstageWithoutRecord(volumeID, staging string) error {
	mounted, err := n.isMountPoint(staging)
	if err != nil {
		return errorf(codes.Internal, "staging_target_path %s: %v", staging, err)
	}
	if !mounted {
		return nil
	}
	if owner, err := n.records.stagedAt(staging); err != nil {
		return errorf(codes.Internal, "staging_target_path %s: %v", staging, err)
	} else if owner != "" {
		klog.InfoS("Staging path belongs to another volume; left alone", "volumeID", volumeID, "stagingPath", staging, "owner", owner)
		return nil
	}
	klog.InfoS("Unmounting a staging path the node has no record of", "volumeID", volumeID, "stagingPath", staging)
	if err := n.unmountAll(staging); err != nil {
		return errorf(codes.Internal, "volume %s: unmount %s: %v", volumeID, staging, err)
	}
	return nil
}

// stagingProblem says what is wrong with a staged volume ("" if nothing): its
// device must still be the volume's and, for a mount volume, mounted at the
// staging path.
func (n *NodeServer) stagingProblem(ctx context.Context, rec *nodeRecord) string {
	cur, err := n.cfg.Initiator.Device(ctx, rec.VolumeID, rec.PublishContext)
	switch {
	case err != nil:
		return fmt.Sprintf("cannot look up the device: %v", err)
	case cur == "":
		return fmt.Sprintf("device %s is gone (detached, or its backing store vanished)", rec.Device)
	case cur != rec.Device:
		return fmt.Sprintf("the volume is now %s, not the staged %s", cur, rec.Device)
	}
	if rec.Block {
		return ""
	}
	if mounted, err := n.isMountPoint(rec.StagingPath); err != nil || !mounted {
		return fmt.Sprintf("staging path %s is not mounted", rec.StagingPath)
	}
	if !n.mountedFrom(ctx, rec.VolumeID, rec.PublishContext, rec.StagingPath) {
		return fmt.Sprintf("staging path %s holds another filesystem", rec.StagingPath)
	}
	return ""
}

// mountedFrom reports whether the filesystem at path lives on the volume's
// current device.
func (n *NodeServer) mountedFrom(ctx context.Context, volumeID string, pc map[string]string, path string) bool {
	dev, err := n.cfg.Initiator.Device(ctx, volumeID, pc)
	if err != nil || dev == "" {
		return false
	}
	want, ok, err := blockDeviceNumber(dev)
	if err != nil || !ok {
		return false
	}
	got, err := fsDevice(path)
	return err == nil && got == want
}

// stagingMountOptions are the options of the staging mount.
func stagingMountOptions(mountFlags []string, readerOnly bool) []string {
	opts := append([]string(nil), mountFlags...)
	if readerOnly {
		opts = append(opts, "ro")
	}
	return opts
}

func describeStaging(block bool, fsType string, readOnly bool) string {
	s := "block"
	if !block {
		s = "filesystem " + fsType
	}
	if readOnly {
		s += " (read-only)"
	}
	return s
}

// transportError maps initiator errors to CSI codes.
func transportError(err error, what string) error {
	switch {
	case errors.Is(err, loop.ErrBackingFileMissing):
		return errorf(codes.NotFound, "%s: %v", what, err)
	case errors.Is(err, loop.ErrBadPublishContext):
		return errorf(codes.InvalidArgument, "%s: publish_context: %v", what, err)
	}
	// A transport that already chose a gRPC code (nvme: Unavailable for an
	// unreachable target, DeadlineExceeded for a device that never appeared)
	// knows better than Internal.
	if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown && st.Code() != codes.OK {
		return errorf(st.Code(), "%s: %s", what, st.Message())
	}
	return errorf(codes.Internal, "%s: %v", what, err)
}
