package loop

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/plugin/transport"
)

// ErrBackingFileMissing means the volume's backing file does not exist on this
// node: the volume is gone (or the pool is not shared with this node).
var ErrBackingFileMissing = errors.New("backing file missing")

// ErrBadPublishContext means the publish context lacks or contradicts what the
// loop transport needs (a request error, not a node fault).
var ErrBadPublishContext = errors.New("bad publish_context")

// ErrWrongDevice means a loop device did not prove to be the requested volume.
var ErrWrongDevice = errors.New("loop device is not backed by the volume's file")

// Initiator is the node side of the loop transport: it binds the volume's
// backing file (which the node sees because it shares the pool directory) to a
// loop device with losetup from util-linux, the tool the plugin image carries.
// All state is read back from sysfs, so it survives plugin restarts.
type Initiator struct {
	// sysBlock is where the loop devices' sysfs directories are.
	sysBlock string
	losetup  string
}

var _ transport.Initiator = (*Initiator)(nil)

// NewInitiator returns the loop initiator.
func NewInitiator() *Initiator {
	return &Initiator{sysBlock: "/sys/block", losetup: "losetup"}
}

// Name is the transport name the publish context must carry.
func (i *Initiator) Name() string { return Name }

// Attach binds the volume's backing file to a read-write loop device, or returns
// the one already bound.
func (i *Initiator) Attach(ctx context.Context, volumeID string, publishContext map[string]string) (string, error) {
	backing, err := i.checkedBackingFile(volumeID, publishContext)
	if err != nil {
		return "", err
	}
	devs, err := i.devicesOf(backing)
	if err != nil {
		return "", err
	}
	for _, d := range devs {
		if !d.readOnly && !d.deleted {
			return d.path, nil
		}
	}
	return i.bind(ctx, volumeID, backing, false)
}

// AttachReadOnly binds the backing file to a new read-only loop device. Read-only
// raw block publishes get their own device because a read-only bind mount does
// not stop writes through a device node.
func (i *Initiator) AttachReadOnly(ctx context.Context, volumeID string, publishContext map[string]string) (string, error) {
	backing, err := i.checkedBackingFile(volumeID, publishContext)
	if err != nil {
		return "", err
	}
	return i.bind(ctx, volumeID, backing, true)
}

func (i *Initiator) bind(ctx context.Context, volumeID, backing string, readOnly bool) (string, error) {
	args := []string{"--find", "--show", "--direct-io=off"}
	if readOnly {
		args = append(args, "--read-only")
	}
	out, err := i.run(ctx, append(args, backing)...)
	if err != nil {
		return "", err
	}
	dev := strings.TrimSpace(out)
	// Prove the device we got is really this volume before anyone touches it.
	got, _, err := i.backingFileOf(dev)
	if err != nil || got != backing {
		_, _ = i.run(ctx, "--detach", dev)
		return "", fmt.Errorf("%w: %s is backed by %q, want %q (volume %s): %v", ErrWrongDevice, dev, got, backing, volumeID, err)
	}
	klog.V(2).InfoS("Attached loop device", "volumeID", volumeID, "device", dev, "backingFile", backing, "readOnly", readOnly)
	return dev, nil
}

// Detach removes every loop device bound to the volume's backing file, including
// read-only ones and ones whose file was deleted underneath them.
func (i *Initiator) Detach(ctx context.Context, volumeID string, publishContext map[string]string) error {
	backing, err := backingFileFrom(volumeID, publishContext)
	if err != nil {
		return err
	}
	devs, err := i.devicesOf(backing)
	if err != nil {
		return err
	}
	for _, d := range devs {
		if err := i.detach(ctx, d.path, backing); err != nil {
			return err
		}
		klog.V(2).InfoS("Detached loop device", "volumeID", volumeID, "device", d.path)
	}
	return nil
}

// DetachDevice removes one loop device, and only if it is bound to the volume's
// backing file. A device that is already gone is success.
func (i *Initiator) DetachDevice(ctx context.Context, volumeID string, publishContext map[string]string, devicePath string) error {
	backing, err := backingFileFrom(volumeID, publishContext)
	if err != nil {
		return err
	}
	id := idOf(backing)
	got, held, _, err := i.holds(devicePath, backing, id)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !held {
		return fmt.Errorf("%w: refusing to detach %s: backed by %q, volume %s is %q", ErrWrongDevice, devicePath, got, volumeID, backing)
	}
	return i.detach(ctx, devicePath, backing)
}

// detachSettle is how long detach waits for the kernel to unbind a device
// that was open elsewhere when it was detached.
const detachSettle = 3 * time.Second

// detach unbinds dev from backing. While anything still has the device open
// (a blkid or mkfs of another process, a mount), the kernel only marks it
// autoclear and unbinds at the last close; detach waits for that, so that
// success means the device no longer reaches the file, and reports a device
// still held after detachSettle as an error the caller retries.
func (i *Initiator) detach(ctx context.Context, dev, backing string) error {
	if _, err := i.run(ctx, "--detach", dev); err != nil {
		// A concurrent detach or autoclear may have won the race.
		if _, _, statErr := i.backingFileOf(dev); errors.Is(statErr, os.ErrNotExist) {
			return nil
		}
		return err
	}
	deadline := time.Now().Add(detachSettle)
	id := idOf(backing)
	for {
		_, held, _, err := i.holds(dev, backing, id)
		if err != nil || !held {
			return nil // unbound (or already bound to another volume's file)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("detach %s: still bound to %s %v after the detach: another process holds it open", dev, backing, detachSettle)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Device returns the read-write loop device bound to the volume's backing file,
// or "" when there is none (never attached, detached, or its file was deleted).
func (i *Initiator) Device(_ context.Context, volumeID string, publishContext map[string]string) (string, error) {
	backing, err := backingFileFrom(volumeID, publishContext)
	if err != nil {
		return "", err
	}
	devs, err := i.devicesOf(backing)
	if err != nil {
		return "", err
	}
	for _, d := range devs {
		if !d.readOnly && !d.deleted {
			return d.path, nil
		}
	}
	return "", nil
}

// Rescan makes the loop device take the backing file's current size
// (LOOP_SET_CAPACITY).
func (i *Initiator) Rescan(ctx context.Context, volumeID, devicePath string) error {
	if _, _, err := i.backingFileOf(devicePath); err != nil {
		return fmt.Errorf("rescan %s of volume %s: %w", devicePath, volumeID, err)
	}
	_, err := i.run(ctx, "--set-capacity", devicePath)
	return err
}

// checkedBackingFile returns the backing file named by the publish context after
// checking it exists as a regular file.
func (i *Initiator) checkedBackingFile(volumeID string, publishContext map[string]string) (string, error) {
	backing, err := backingFileFrom(volumeID, publishContext)
	if err != nil {
		return "", err
	}
	st, err := os.Stat(backing)
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("volume %s: %w: %s", volumeID, ErrBackingFileMissing, backing)
	}
	if err != nil {
		return "", err
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("volume %s: backing file %s is not a regular file", volumeID, backing)
	}
	return backing, nil
}

// backingFileFrom reads and checks the loop keys of a publish context. The
// path is resolved the way the kernel reports it in sysfs, so the two compare.
func backingFileFrom(volumeID string, publishContext map[string]string) (string, error) {
	if t := publishContext[transport.KeyTransport]; t != "" && t != Name {
		return "", fmt.Errorf("%w: transport is %q, this node initiator speaks %q", ErrBadPublishContext, t, Name)
	}
	if v := publishContext[transport.KeyVolumeID]; v != "" && v != volumeID {
		return "", fmt.Errorf("%w: %s is %q but the request is for volume %q", ErrBadPublishContext, transport.KeyVolumeID, v, volumeID)
	}
	backing := publishContext[KeyBackingFile]
	if backing == "" {
		return "", fmt.Errorf("%w: %s is missing", ErrBadPublishContext, KeyBackingFile)
	}
	if !filepath.IsAbs(backing) {
		return "", fmt.Errorf("%w: %s %q is not an absolute path", ErrBadPublishContext, KeyBackingFile, backing)
	}
	backing = filepath.Clean(backing)
	if resolved, err := filepath.EvalSymlinks(backing); err == nil {
		backing = resolved
	}
	return backing, nil
}

type loopDevice struct {
	path     string
	readOnly bool
	deleted  bool // the backing file was unlinked while bound
}

// devicesOf lists the loop devices bound to backing, read from sysfs.
func (i *Initiator) devicesOf(backing string) ([]loopDevice, error) {
	entries, err := filepath.Glob(filepath.Join(i.sysBlock, "loop*"))
	if err != nil {
		return nil, err
	}
	id := idOf(backing)
	var devs []loopDevice
	for _, e := range entries {
		dev := "/dev/" + filepath.Base(e)
		_, held, deleted, err := i.holds(dev, backing, id)
		if err != nil || !held {
			continue // unbound, vanished meanwhile, or another file's
		}
		ro, _ := os.ReadFile(filepath.Join(e, "ro"))
		devs = append(devs, loopDevice{path: dev, readOnly: strings.TrimSpace(string(ro)) == "1", deleted: deleted})
	}
	return devs, nil
}

// holds reports whether dev is bound to backing, whose identity is id (nil
// when backing does not exist); got is the path sysfs names. sysfs names the
// file as it was reached in the mount namespace of whoever bound the device.
// A device bound by an earlier plugin container, whose mounts went with it,
// names a path relative to the vanished mount ("/vol-x.img"), so a device
// whose path differs is compared by device and inode number as well: without
// that, a restarted node plugin would not find the devices of volumes staged
// before it (health "DeviceGone", a second device on restage, a leaked one
// on unstage).
func (i *Initiator) holds(dev, backing string, id *fileID) (got string, held, deleted bool, err error) {
	got, deleted, err = i.backingFileOf(dev)
	if err != nil {
		return "", false, false, err
	}
	if got == backing {
		return got, true, deleted, nil
	}
	if id == nil || deleted {
		return got, false, false, nil
	}
	bound, err := boundFileID(dev)
	if err != nil {
		return got, false, false, nil // unbound or gone meanwhile
	}
	return got, bound == *id, false, nil
}

// fileID identifies a file by the device and inode numbers the kernel keeps
// for a loop device's backing file (LOOP_GET_STATUS64).
type fileID struct{ dev, ino uint64 }

// idOf returns path's identity, nil when it cannot be read (deleted, say).
func idOf(path string) *fileID {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nil
	}
	return &fileID{dev: st.Dev, ino: st.Ino}
}

// boundFileID returns the identity of the file loop device dev is bound to.
func boundFileID(dev string) (fileID, error) {
	fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return fileID{}, err
	}
	defer unix.Close(fd)
	info, err := unix.IoctlLoopGetStatus64(fd)
	if err != nil {
		return fileID{}, err
	}
	return fileID{dev: info.Device, ino: info.Inode}, nil
}

// backingFileOf returns the file bound to a loop device according to sysfs
// (/sys/block/loopN/loop/backing_file), with a deleted file's " (deleted)"
// suffix stripped and reported. os.ErrNotExist means the device is unbound.
func (i *Initiator) backingFileOf(devicePath string) (file string, deleted bool, err error) {
	name := filepath.Base(devicePath)
	if !strings.HasPrefix(name, "loop") || filepath.Dir(devicePath) != "/dev" {
		return "", false, fmt.Errorf("%s is not a loop device", devicePath)
	}
	raw, err := os.ReadFile(filepath.Join(i.sysBlock, name, "loop", "backing_file"))
	if err != nil {
		return "", false, err
	}
	file = strings.TrimSuffix(string(raw), "\n")
	if f, ok := strings.CutSuffix(file, " (deleted)"); ok {
		return f, true, nil
	}
	return file, false, nil
}

// BackingFileOf is backingFileOf for callers outside the transport (tests, the
// node's health check).
func (i *Initiator) BackingFileOf(devicePath string) (file string, deleted bool, err error) {
	return i.backingFileOf(devicePath)
}

func (i *Initiator) run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, i.losetup, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("losetup %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}
