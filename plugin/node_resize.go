package plugin

import (
	"strings"

	"google.golang.org/grpc/codes"
	"k8s.io/klog/v2"
	utilexec "k8s.io/utils/exec"
)

// growFilesystem grows the staged filesystem of rec to its device's size:
// online with mount-utils' ResizeFs (resize2fs on the device, xfs_growfs on the
// mount). The kernel grows a mounted ext filesystem only for a process with
// CAP_SYS_RESOURCE, and ext2 not at all; then, if no pod has the volume
// published (kubelet expands between stage and publish), it is grown offline:
// unmount the staging path, e2fsck, resize2fs, mount again.
func (n *NodeServer) growFilesystem(rec *nodeRecord) error {
	if need, err := n.needsGrow(rec); err == nil && !need {
		return nil // already the device's size (e.g. grown when it was staged)
	}
	return n.grow(rec)
}

// grow is growFilesystem without the size check, for callers that made it.
func (n *NodeServer) grow(rec *nodeRecord) error {
	_, onlineErr := n.mounter.Resize(rec.Device, rec.StagingPath)
	if onlineErr == nil {
		return nil
	}
	if !strings.HasPrefix(rec.FsType, "ext") {
		return errorf(codes.Internal, "volume %s: grow %s filesystem: %v", rec.VolumeID, rec.FsType, onlineErr)
	}
	for target := range rec.Targets {
		if mounted, err := n.isMountPoint(target); err == nil && mounted {
			return errorf(codes.FailedPrecondition,
				"volume %s: the %s filesystem cannot be grown online (%v): the kernel needs CAP_SYS_RESOURCE for the plugin (ext2: never online); "+
					"it is grown offline once no pod uses it (published at %s)", rec.VolumeID, rec.FsType, oneLine(onlineErr), target)
		}
	}
	klog.InfoS("Online grow refused; growing offline", "volumeID", rec.VolumeID, "fsType", rec.FsType, "err", oneLine(onlineErr))
	return n.growExtOffline(rec)
}

// growAtStage grows a filesystem that is smaller than its device right after
// staging, while no pod can use it: the volume was expanded while detached.
// The kubelet asks for NodeExpandVolume only once the pod's target is
// published, when an ext filesystem can no longer be grown without
// CAP_SYS_RESOURCE; here it is always possible. A failure is logged, not
// returned: the data is intact and the kubelet's NodeExpandVolume follows.
func (n *NodeServer) growAtStage(rec *nodeRecord) {
	if rec.ReadOnly {
		return
	}
	need, err := n.needsGrow(rec)
	if err != nil {
		klog.V(2).InfoS("Cannot tell whether the filesystem fills its device; not growing it at stage", "volumeID", rec.VolumeID, "err", err)
		return
	}
	if !need {
		return
	}
	if err := n.grow(rec); err != nil {
		klog.ErrorS(err, "Growing the filesystem at stage failed; NodeExpandVolume will try again", "volumeID", rec.VolumeID)
		return
	}
	klog.InfoS("Grew the filesystem to its device's size at stage", "volumeID", rec.VolumeID, "device", rec.Device, "fsType", rec.FsType)
}

func (n *NodeServer) growExtOffline(rec *nodeRecord) (err error) {
	if err := n.unmountAll(rec.StagingPath); err != nil {
		return errorf(codes.Internal, "volume %s: unmount %s for offline grow: %v", rec.VolumeID, rec.StagingPath, err)
	}
	defer func() {
		// Mount again whatever happened, so the volume stays staged.
		if mountErr := n.mounter.Mount(rec.Device, rec.StagingPath, rec.FsType, stagingMountOptions(rec.MountFlags, rec.ReadOnly)); mountErr != nil && err == nil {
			err = errorf(codes.Internal, "volume %s: mount %s again after offline grow: %v", rec.VolumeID, rec.StagingPath, mountErr)
		}
	}()
	// resize2fs refuses a filesystem not checked since its last mount.
	out, err := n.mounter.Command("e2fsck", "-f", "-p", rec.Device).CombinedOutput()
	if ee, ok := err.(utilexec.ExitError); ok && ee.ExitStatus() == 1 {
		err = nil // errors corrected
	}
	if err != nil {
		return errorf(codes.Internal, "volume %s: e2fsck %s before offline grow: %v: %s", rec.VolumeID, rec.Device, err, out)
	}
	if out, err := n.mounter.Command("resize2fs", rec.Device).CombinedOutput(); err != nil {
		return errorf(codes.Internal, "volume %s: resize2fs %s: %v: %s", rec.VolumeID, rec.Device, err, out)
	}
	return nil
}

// oneLine flattens a multi-line tool error into one line for a status message.
func oneLine(err error) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
}
