package plugin

import (
	mount "k8s.io/mount-utils"
	utilexec "k8s.io/utils/exec"
)

// Mounter is all the node service does with mounts, filesystems and their
// tools. It exists so the node's error paths can be unit-tested with a fake
// (no root, no loop device); the real one wraps k8s.io/mount-utils, and the
// root tests keep exercising it with real mounts.
type Mounter interface {
	// IsMountPoint reports whether path is a mount point (os.ErrNotExist if
	// path is missing).
	IsMountPoint(path string) (bool, error)
	Mount(source, target, fsType string, options []string) error
	Unmount(target string) error
	// GetDiskFormat returns the filesystem on device, "" if it is blank.
	GetDiskFormat(device string) (string, error)
	// FormatAndMountSensitiveWithFormatOptions formats source with mkfs
	// formatOptions only if it is blank, then mounts it.
	FormatAndMountSensitiveWithFormatOptions(source, target, fsType string, options, sensitiveOptions, formatOptions []string) error
	// NeedResize and Resize are mount-utils' ResizeFs.
	NeedResize(devicePath, deviceMountPath string) (bool, error)
	Resize(devicePath, deviceMountPath string) (bool, error)
	// Command runs a filesystem tool (e2fsck, resize2fs, dumpe2fs, xfs_io).
	Command(name string, args ...string) utilexec.Cmd
}

// NewMounter returns the real Mounter: mount-utils on the host's mount
// table and executables.
func NewMounter() Mounter {
	ex := utilexec.New()
	return &utilMounter{
		SafeFormatAndMount: mount.NewSafeFormatAndMount(mount.NewWithoutSystemd(""), ex),
		resizer:            mount.NewResizeFs(ex),
	}
}

// utilMounter is mount-utils' SafeFormatAndMount (which gives IsMountPoint,
// Mount, Unmount, GetDiskFormat and FormatAndMount...) plus its ResizeFs and
// executor.
type utilMounter struct {
	*mount.SafeFormatAndMount
	resizer *mount.ResizeFs
}

func (m *utilMounter) NeedResize(devicePath, deviceMountPath string) (bool, error) {
	return m.resizer.NeedResize(devicePath, deviceMountPath)
}

func (m *utilMounter) Resize(devicePath, deviceMountPath string) (bool, error) {
	return m.resizer.Resize(devicePath, deviceMountPath)
}

func (m *utilMounter) Command(name string, args ...string) utilexec.Cmd {
	return m.Exec.Command(name, args...)
}
