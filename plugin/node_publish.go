package plugin

import (
	"context"
	"errors"
	"os"
	"path/filepath"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"k8s.io/klog/v2"
)

// readOnlyAttacher is implemented by initiators that can make an extra,
// read-only device for a volume (loop: losetup --read-only). A read-only bind
// mount of a device node does not stop writes through it, so read-only raw
// block publishes need such a device.
type readOnlyAttacher interface {
	AttachReadOnly(ctx context.Context, volumeID string, publishContext map[string]string) (string, error)
	DetachDevice(ctx context.Context, volumeID string, publishContext map[string]string, devicePath string) error
}

// NodePublishVolume implements csi.NodeServer: bind-mount the staged filesystem
// at target_path, or bind the device node onto a file at target_path for raw
// block. Read-only and mount flags are honoured.
func (n *NodeServer) NodePublishVolume(ctx context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	volumeID := req.GetVolumeId()
	if err := requireVolumeID(volumeID); err != nil {
		return nil, err
	}
	if err := requirePath("target_path", req.GetTargetPath()); err != nil {
		return nil, err
	}
	target := filepath.Clean(req.GetTargetPath())
	vcap, err := parseNodeCapability(req.GetVolumeCapability())
	if err != nil {
		return nil, err
	}
	if req.GetStagingTargetPath() == "" {
		return nil, errorf(codes.FailedPrecondition, "staging_target_path is required: the node stages volumes (STAGE_UNSTAGE_VOLUME)")
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
		return nil, errorf(codes.FailedPrecondition, "volume %s is not staged on this node: NodeStageVolume first", volumeID)
	}
	if err != nil {
		return nil, errorf(codes.Internal, "volume %s: %v", volumeID, err)
	}
	switch {
	case rec.StagingPath != staging:
		return nil, errorf(codes.FailedPrecondition, "volume %s is staged at %s, not at staging_target_path %s", volumeID, rec.StagingPath, staging)
	case rec.Block != vcap.block:
		return nil, errorf(codes.FailedPrecondition, "volume %s is staged as %s; volume_capability asks for %s",
			volumeID, describeStaging(rec.Block, rec.FsType, false), describeStaging(vcap.block, vcap.fsType, false))
	case !vcap.block && rec.FsType != vcap.fsType:
		return nil, errorf(codes.FailedPrecondition, "volume %s is staged with %s; volume_capability.mount.fs_type asks for %s", volumeID, rec.FsType, vcap.fsType)
	}
	if problem := n.stagingProblem(ctx, rec); problem != "" {
		return nil, errorf(codes.FailedPrecondition, "volume %s is not usable: %s: stage it again", volumeID, problem)
	}
	readOnly := req.GetReadonly() || vcap.readerOnly || rec.ReadOnly

	mounted, err := n.isMountPoint(target)
	if err != nil {
		return nil, errorf(codes.Internal, "target_path %s: %v", target, err)
	}
	if mounted {
		return n.publishedAlready(rec, target, readOnly)
	}
	if err := n.checkSingleWriter(rec, target, vcap.singleWriter); err != nil {
		return nil, err
	}

	pub := publishedTarget{ReadOnly: readOnly, SingleWriter: vcap.singleWriter}
	if vcap.block {
		if pub.Device, err = n.publishBlock(ctx, rec, target, readOnly); err != nil {
			return nil, err
		}
	} else if err := n.publishMount(volumeID, staging, target, readOnly, vcap.mountFlags); err != nil {
		return nil, err
	}
	rec.Targets[target] = pub
	if err := n.records.save(rec); err != nil {
		// The mount is there and NodeUnpublishVolume does not need the record.
		return nil, errorf(codes.Internal, "volume %s: save node record: %v", volumeID, err)
	}
	klog.InfoS("Published volume", "volumeID", volumeID, "targetPath", target, "readOnly", readOnly, "block", vcap.block)
	return &csi.NodePublishVolumeResponse{}, nil
}

// publishMount bind-mounts the staged filesystem at target.
func (n *NodeServer) publishMount(volumeID, staging, target string, readOnly bool, mountFlags []string) error {
	if err := os.MkdirAll(target, 0o750); err != nil {
		return errorf(codes.Internal, "target_path %s: %v", target, err)
	}
	opts := []string{"bind"}
	if readOnly {
		opts = append(opts, "ro")
	}
	opts = append(opts, mountFlags...)
	if err := n.mounter.Mount(staging, target, "", opts); err != nil {
		return errorf(codes.Internal, "volume %s: bind-mount %s at %s: %v", volumeID, staging, target, err)
	}
	return nil
}

// publishBlock binds the volume's device node onto a file at target. A
// read-only publish gets its own read-only device, which it returns.
func (n *NodeServer) publishBlock(ctx context.Context, rec *nodeRecord, target string, readOnly bool) (string, error) {
	dev, roDev := rec.Device, ""
	if readOnly {
		ro, ok := n.cfg.Initiator.(readOnlyAttacher)
		if !ok {
			return "", errorf(codes.InvalidArgument, "readonly: the %s transport cannot make a read-only block device", n.cfg.Initiator.Name())
		}
		var err error
		if roDev, err = ro.AttachReadOnly(ctx, rec.VolumeID, rec.PublishContext); err != nil {
			return "", transportError(err, "attach read-only device of volume "+rec.VolumeID)
		}
		dev = roDev
	}
	undo := func() {
		if roDev != "" {
			_ = n.cfg.Initiator.(readOnlyAttacher).DetachDevice(ctx, rec.VolumeID, rec.PublishContext, roDev)
		}
	}
	if err := ensureFile(target); err != nil {
		undo()
		return "", errorf(codes.Internal, "target_path %s: %v", target, err)
	}
	opts := []string{"bind"}
	if readOnly {
		opts = append(opts, "ro")
	}
	if err := n.mounter.Mount(dev, target, "", opts); err != nil {
		undo()
		return "", errorf(codes.Internal, "volume %s: bind %s onto %s: %v", rec.VolumeID, dev, target, err)
	}
	return roDev, nil
}

// publishedAlready answers a publish to a target that is already mounted:
// success when it is this volume published the same way, an error otherwise.
func (n *NodeServer) publishedAlready(rec *nodeRecord, target string, readOnly bool) (*csi.NodePublishVolumeResponse, error) {
	if !n.targetIsVolume(rec, target) {
		return nil, errorf(codes.AlreadyExists, "target_path %s already has something else mounted, not volume %s", target, rec.VolumeID)
	}
	pub, known := rec.Targets[target]
	if known && pub.ReadOnly != readOnly {
		return nil, errorf(codes.AlreadyExists, "volume %s is already published at %s with readonly=%v; the request asks readonly=%v",
			rec.VolumeID, target, pub.ReadOnly, readOnly)
	}
	if !known {
		// Mounted by an earlier call whose record update was lost: adopt it.
		rec.Targets[target] = publishedTarget{ReadOnly: readOnly}
		if err := n.records.save(rec); err != nil {
			return nil, errorf(codes.Internal, "volume %s: save node record: %v", rec.VolumeID, err)
		}
	}
	return &csi.NodePublishVolumeResponse{}, nil
}

// targetIsVolume reports whether what is mounted at target is this volume:
// the same filesystem device (mount) or a node of one of its devices (block).
func (n *NodeServer) targetIsVolume(rec *nodeRecord, target string) bool {
	devices := []string{rec.Device}
	if pub, ok := rec.Targets[target]; ok && pub.Device != "" {
		devices = append(devices, pub.Device)
	}
	for _, d := range devices {
		want, ok, err := blockDeviceNumber(d)
		if err != nil || !ok {
			continue
		}
		if rec.Block {
			if got, isBlock, err := blockDeviceNumber(target); err == nil && isBlock && got == want {
				return true
			}
		} else if got, err := fsDevice(target); err == nil && got == want {
			return true
		}
	}
	return false
}

// checkSingleWriter refuses a second publish of a SINGLE_NODE_SINGLE_WRITER
// volume (or any publish next to one).
func (n *NodeServer) checkSingleWriter(rec *nodeRecord, target string, singleWriter bool) error {
	for other, pub := range rec.Targets {
		if other == target {
			continue
		}
		if mounted, err := n.isMountPoint(other); err != nil || !mounted {
			continue // a stale entry
		}
		if singleWriter || pub.SingleWriter {
			return errorf(codes.FailedPrecondition, "volume %s has access mode SINGLE_NODE_SINGLE_WRITER and is already published at %s", rec.VolumeID, other)
		}
	}
	return nil
}

// NodeUnpublishVolume implements csi.NodeServer: unmount target_path and remove
// it, and detach a read-only device made for it.
func (n *NodeServer) NodeUnpublishVolume(ctx context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	volumeID := req.GetVolumeId()
	if err := requireVolumeID(volumeID); err != nil {
		return nil, err
	}
	if err := requirePath("target_path", req.GetTargetPath()); err != nil {
		return nil, err
	}
	target := filepath.Clean(req.GetTargetPath())
	release, err := n.lock(volumeID)
	if err != nil {
		return nil, err
	}
	defer release()

	rec, err := n.records.load(volumeID)
	if err != nil && !errors.Is(err, errNoRecord) {
		return nil, errorf(codes.Internal, "volume %s: %v", volumeID, err)
	}
	if err := n.unmountAll(target); err != nil {
		return nil, errorf(codes.Internal, "volume %s: unmount %s: %v", volumeID, target, err)
	}
	if rec != nil {
		if pub := rec.Targets[target]; pub.Device != "" {
			if ro, ok := n.cfg.Initiator.(readOnlyAttacher); ok {
				if err := ro.DetachDevice(ctx, volumeID, rec.PublishContext, pub.Device); err != nil {
					return nil, transportError(err, "detach read-only device of volume "+volumeID)
				}
			}
		}
	}
	if err := removePath(target); err != nil {
		return nil, errorf(codes.Internal, "volume %s: remove target_path %s: %v", volumeID, target, err)
	}
	if rec != nil {
		if _, ok := rec.Targets[target]; ok {
			delete(rec.Targets, target)
			if err := n.records.save(rec); err != nil {
				return nil, errorf(codes.Internal, "volume %s: save node record: %v", volumeID, err)
			}
		}
	}
	klog.InfoS("Unpublished volume", "volumeID", volumeID, "targetPath", target)
	return &csi.NodeUnpublishVolumeResponse{}, nil
}
