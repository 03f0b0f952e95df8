package plugin

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// isMountPoint reports whether path is a mount point; a missing path is not.
func (n *NodeServer) isMountPoint(path string) (bool, error) {
	mounted, err := n.mounter.IsMountPoint(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return mounted, err
}

// unmountAll unmounts path until nothing is mounted there (a path can carry
// stacked mounts when an earlier call was interrupted).
func (n *NodeServer) unmountAll(path string) error {
	for range 8 {
		mounted, err := n.isMountPoint(path)
		if err != nil {
			return err
		}
		if !mounted {
			return nil
		}
		if err := n.mounter.Unmount(path); err != nil {
			return err
		}
	}
	return fmt.Errorf("%s is still mounted after 8 unmounts", path)
}

// fsDevice returns the device number of the filesystem a path lives on: for a
// staging or publish path of a mount volume, the loop device's number.
func fsDevice(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, err
	}
	return st.Dev, nil
}

// blockDeviceNumber returns the device number of a block device node (a device
// path, or a publish target the device node is bind-mounted on). ok is false
// when path is not a block device node.
func blockDeviceNumber(path string) (rdev uint64, ok bool, err error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, false, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return 0, false, nil
	}
	return st.Rdev, true, nil
}

// blockDeviceSize reads a block device's size from sysfs by device number, so
// it works on any node of the device, including a bind-mounted publish target.
func blockDeviceSize(rdev uint64) (int64, error) {
	p := fmt.Sprintf("/sys/dev/block/%d:%d/size", unix.Major(rdev), unix.Minor(rdev))
	raw, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	sectors, err := strconv.ParseInt(strings.TrimSpace(string(raw)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", p, err)
	}
	return sectors * 512, nil
}

// ensureFile creates an empty file at path (and its parent directory) to bind a
// raw block device onto.
func ensureFile(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDONLY, 0o640)
	if err != nil {
		return err
	}
	return f.Close()
}

// removePath removes a publish target (directory or file) that nothing is
// mounted on any more. A non-empty directory is left alone and reported: it
// may hold data written when nothing was mounted there.
func removePath(path string) error {
	err := os.Remove(path)
	if err == nil || errors.Is(err, os.ErrNotExist) {
		return nil
	}
	klog.ErrorS(err, "Could not remove unpublished target", "path", path)
	return err
}
