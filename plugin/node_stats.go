package plugin

import (
	"context"
	"errors"
	"os"
	"path/filepath"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"k8s.io/klog/v2"
)

// volumeAt loads the record of a volume and checks path is where it is staged
// or published. CSI wants NotFound for an unknown volume and for a path the
// volume is not at.
func (n *NodeServer) volumeAt(volumeID, path string) (*nodeRecord, string, error) {
	rec, err := n.records.load(volumeID)
	if errors.Is(err, errNoRecord) {
		return nil, "", errorf(codes.NotFound, "volume %s is not staged or published on this node", volumeID)
	}
	if err != nil {
		return nil, "", errorf(codes.Internal, "volume %s: %v", volumeID, err)
	}
	path = filepath.Clean(path)
	if _, published := rec.Targets[path]; path != rec.StagingPath && !published {
		return nil, "", errorf(codes.NotFound, "volume_path %s: volume %s is not staged or published there", path, volumeID)
	}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil, "", errorf(codes.NotFound, "volume_path %s does not exist", path)
	} else if err != nil {
		return nil, "", errorf(codes.Internal, "volume_path %s: %v", path, err)
	}
	return rec, path, nil
}

// NodeGetVolumeStats implements csi.NodeServer: bytes and inodes of the
// filesystem, or the device size of a raw block volume. A volume whose device
// is gone is reported abnormal with FailedPrecondition (CSI 1.13 dropped the
// volume_condition field; NodeGetVolumeHealth carries the detail).
func (n *NodeServer) NodeGetVolumeStats(ctx context.Context, req *csi.NodeGetVolumeStatsRequest) (*csi.NodeGetVolumeStatsResponse, error) {
	volumeID := req.GetVolumeId()
	if err := requireVolumeID(volumeID); err != nil {
		return nil, err
	}
	if req.GetVolumePath() == "" {
		return nil, errorf(codes.InvalidArgument, "volume_path is required")
	}
	rec, path, err := n.volumeAt(volumeID, req.GetVolumePath())
	if err != nil {
		return nil, err
	}
	if h := n.health(ctx, rec, ""); len(h) > 0 && h[0].Status == csi.VolumeHealthErrorType_INACCESSIBLE {
		return nil, errorf(codes.FailedPrecondition, "volume %s is abnormal: %s", volumeID, h[0].Message)
	}
	if rec.Block {
		dev := rec.Device
		if pub := rec.Targets[path]; pub.Device != "" {
			dev = pub.Device
		}
		rdev, _, err := blockDeviceNumber(dev)
		if err != nil {
			return nil, errorf(codes.Internal, "volume %s: %v", volumeID, err)
		}
		size, err := blockDeviceSize(rdev)
		if err != nil {
			return nil, errorf(codes.Internal, "volume %s: device size: %v", volumeID, err)
		}
		return &csi.NodeGetVolumeStatsResponse{Usage: []*csi.VolumeUsage{{Total: size, Unit: csi.VolumeUsage_BYTES}}}, nil
	}
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return nil, errorf(codes.Internal, "volume %s: statfs %s: %v", volumeID, path, err)
	}
	bsize := st.Bsize
	return &csi.NodeGetVolumeStatsResponse{Usage: []*csi.VolumeUsage{
		{
			Unit:      csi.VolumeUsage_BYTES,
			Total:     int64(st.Blocks) * bsize,
			Available: int64(st.Bavail) * bsize,
			Used:      int64(st.Blocks-st.Bfree) * bsize,
		},
		{
			Unit:      csi.VolumeUsage_INODES,
			Total:     int64(st.Files),
			Available: int64(st.Ffree),
			Used:      int64(st.Files - st.Ffree),
		},
	}}, nil
}

// NodeGetVolumeHealth implements csi.NodeServer (GET_VOLUME_HEALTH, CSI 1.13's
// successor of VOLUME_CONDITION).
func (n *NodeServer) NodeGetVolumeHealth(ctx context.Context, req *csi.NodeGetVolumeHealthRequest) (*csi.NodeGetVolumeHealthResponse, error) {
	volumeID := req.GetVolumeId()
	if err := requireVolumeID(volumeID); err != nil {
		return nil, err
	}
	rec, err := n.records.load(volumeID)
	if errors.Is(err, errNoRecord) {
		return nil, errorf(codes.NotFound, "volume %s is not staged or published on this node", volumeID)
	}
	if err != nil {
		return nil, errorf(codes.Internal, "volume %s: %v", volumeID, err)
	}
	publishPath := ""
	if p := req.GetVolumePublishPath(); p != "" {
		publishPath = filepath.Clean(p)
	}
	return &csi.NodeGetVolumeHealthResponse{VolumeHealth: &csi.VolumeHealth{
		VolumeId: volumeID, HealthStatuses: n.health(ctx, rec, publishPath)}}, nil
}

// health lists what is wrong with a staged volume, most severe first.
func (n *NodeServer) health(ctx context.Context, rec *nodeRecord, publishPath string) []*csi.VolumeHealth_VolumeHealthEntry {
	entry := func(s csi.VolumeHealthErrorType, reason, msg string) []*csi.VolumeHealth_VolumeHealthEntry {
		klog.V(2).InfoS("Volume unhealthy", "volumeID", rec.VolumeID, "reason", reason, "message", msg)
		return []*csi.VolumeHealth_VolumeHealthEntry{{Status: s, Reason: reason, Message: msg}}
	}
	cur, err := n.cfg.Initiator.Device(ctx, rec.VolumeID, rec.PublishContext)
	switch {
	case err != nil:
		return entry(csi.VolumeHealthErrorType_INACCESSIBLE, "DeviceLookupFailed", err.Error())
	case cur == "":
		return entry(csi.VolumeHealthErrorType_INACCESSIBLE, "DeviceGone",
			"device "+rec.Device+" no longer holds the volume (detached, or its backing store vanished)")
	case cur != rec.Device:
		return entry(csi.VolumeHealthErrorType_INACCESSIBLE, "DeviceChanged",
			"the volume is now "+cur+" but its mounts use "+rec.Device)
	}
	if !rec.Block {
		if mounted, err := n.isMountPoint(rec.StagingPath); err != nil || !mounted || !n.mountedFrom(ctx, rec.VolumeID, rec.PublishContext, rec.StagingPath) {
			return entry(csi.VolumeHealthErrorType_INACCESSIBLE, "StagingMountMissing", "the filesystem is not mounted at "+rec.StagingPath)
		}
	}
	if publishPath != "" {
		if mounted, err := n.isMountPoint(publishPath); err != nil || !mounted || !n.targetIsVolume(rec, publishPath) {
			return entry(csi.VolumeHealthErrorType_INACCESSIBLE, "PublishMountMissing", "the volume is not mounted at "+publishPath)
		}
	}
	if !rec.Block && !rec.ReadOnly {
		// ext4 with errors=remount-ro turns read-only after an I/O error.
		var st unix.Statfs_t
		if err := unix.Statfs(rec.StagingPath, &st); err == nil && st.Flags&unix.ST_RDONLY != 0 {
			return entry(csi.VolumeHealthErrorType_DEGRADED, "FilesystemReadOnly", "the filesystem at "+rec.StagingPath+" turned read-only, probably after I/O errors")
		}
	}
	return nil
}

// NodeExpandVolume implements csi.NodeServer: make the device take the grown
// backing store's size, then grow the filesystem (ext*: resize2fs; xfs:
// xfs_growfs on the staging mount).
func (n *NodeServer) NodeExpandVolume(ctx context.Context, req *csi.NodeExpandVolumeRequest) (*csi.NodeExpandVolumeResponse, error) {
	volumeID := req.GetVolumeId()
	if err := requireVolumeID(volumeID); err != nil {
		return nil, err
	}
	if req.GetVolumePath() == "" {
		return nil, errorf(codes.InvalidArgument, "volume_path is required")
	}
	required := req.GetCapacityRange().GetRequiredBytes()
	limit := req.GetCapacityRange().GetLimitBytes()
	if required < 0 || limit < 0 || (limit > 0 && required > limit) {
		return nil, errorf(codes.InvalidArgument, "capacity_range: required_bytes %d and limit_bytes %d are not a valid range", required, limit)
	}
	var vcap *nodeCapability
	if vc := req.GetVolumeCapability(); vc != nil {
		c, err := parseNodeCapability(vc)
		if err != nil {
			return nil, err
		}
		vcap = &c
	}
	release, err := n.lock(volumeID)
	if err != nil {
		return nil, err
	}
	defer release()
	rec, _, err := n.volumeAt(volumeID, req.GetVolumePath())
	if err != nil {
		return nil, err
	}
	if vcap != nil && vcap.block != rec.Block {
		return nil, errorf(codes.InvalidArgument, "volume_capability: volume %s is staged as %s", volumeID, describeStaging(rec.Block, rec.FsType, false))
	}

	if problem := n.stagingProblem(ctx, rec); problem != "" {
		return nil, errorf(codes.FailedPrecondition, "volume %s is not usable: %s", volumeID, problem)
	}
	devices := []string{rec.Device}
	for _, pub := range rec.Targets {
		if pub.Device != "" {
			devices = append(devices, pub.Device)
		}
	}
	for _, d := range devices {
		if err := n.cfg.Initiator.Rescan(ctx, volumeID, d); err != nil {
			return nil, transportError(err, "rescan device of volume "+volumeID)
		}
	}
	rdev, _, err := blockDeviceNumber(rec.Device)
	if err != nil {
		return nil, errorf(codes.Internal, "volume %s: %v", volumeID, err)
	}
	size, err := blockDeviceSize(rdev)
	if err != nil {
		return nil, errorf(codes.Internal, "volume %s: device size: %v", volumeID, err)
	}
	if size < required {
		return nil, errorf(codes.FailedPrecondition, "volume %s: the device is %d bytes after rescan, less than capacity_range.required_bytes %d: ControllerExpandVolume must grow it first",
			volumeID, size, required)
	}
	if !rec.Block {
		if err := n.growFilesystem(rec); err != nil {
			return nil, err
		}
	}
	klog.InfoS("Expanded volume on node", "volumeID", volumeID, "bytes", size)
	return &csi.NodeExpandVolumeResponse{CapacityBytes: size}, nil
}
