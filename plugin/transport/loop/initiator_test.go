package loop

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/csi-hub/csi-hub/plugin/transport"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIPPING: loop initiator tests need root to create loop devices (run as root: sudo go test ./plugin/transport/loop/)")
	}
}

// newBackingFile creates a sparse file and makes sure every loop device bound to
// it is gone when the test ends, pass or fail.
func newBackingFile(t *testing.T, size int64) string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "vol.img")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
	i := NewInitiator()
	t.Cleanup(func() {
		resolved, _ := filepath.EvalSymlinks(path)
		devs, _ := i.devicesOf(resolved)
		for _, d := range devs {
			_, _ = i.run(context.Background(), "--detach", d.path)
		}
	})
	return path
}

func publishContext(volumeID, backing string) map[string]string {
	return map[string]string{transport.KeyTransport: Name, transport.KeyVolumeID: volumeID, KeyBackingFile: backing}
}

func deviceSize(t *testing.T, dev string) int64 {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(dev), "size"))
	if err != nil {
		t.Fatal(err)
	}
	sectors, err := strconv.ParseInt(strings.TrimSpace(string(raw)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return sectors * 512
}

// attachedVolume attaches a fresh 64 MiB volume id (root only) and returns
// the initiator, its publish context and the device.
func attachedVolume(t *testing.T, id string) (*Initiator, map[string]string, string) {
	t.Helper()
	requireRoot(t)
	i := NewInitiator()
	pc := publishContext(id, newBackingFile(t, 64<<20))
	dev, err := i.Attach(context.Background(), id, pc)
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	return i, pc, dev
}

func TestInitiatorAttachDetachRoundTrip(t *testing.T) {
	ctx := context.Background()
	i, pc, dev := attachedVolume(t, "vol-a")
	backing := pc[KeyBackingFile]
	got, deleted, err := i.BackingFileOf(dev)
	if err != nil || deleted || got != backing {
		t.Fatalf("sysfs of %s says backing %q deleted=%v err=%v, want %q", dev, got, deleted, err, backing)
	}
	again, err := i.Attach(ctx, "vol-a", pc)
	if err != nil || again != dev {
		t.Fatalf("second Attach = %q, %v; want the same device %q", again, err, dev)
	}
	if cur, err := i.Device(ctx, "vol-a", pc); err != nil || cur != dev {
		t.Fatalf("Device = %q, %v; want %q", cur, err, dev)
	}

	// Grow the file; the device only follows after Rescan.
	if err := os.Truncate(backing, 128<<20); err != nil {
		t.Fatal(err)
	}
	if s := deviceSize(t, dev); s != 64<<20 {
		t.Fatalf("device size before rescan = %d, want %d", s, 64<<20)
	}
	if err := i.Rescan(ctx, "vol-a", dev); err != nil {
		t.Fatalf("Rescan: %v", err)
	}
	if s := deviceSize(t, dev); s != 128<<20 {
		t.Fatalf("device size after rescan = %d, want %d", s, 128<<20)
	}

	if err := i.Detach(ctx, "vol-a", pc); err != nil {
		t.Fatalf("Detach: %v", err)
	}
	if cur, err := i.Device(ctx, "vol-a", pc); err != nil || cur != "" {
		t.Fatalf("Device after Detach = %q, %v; want none", cur, err)
	}
	if err := i.Detach(ctx, "vol-a", pc); err != nil {
		t.Fatalf("second Detach must be idempotent: %v", err)
	}
}

func TestInitiatorRefusesWrongVolume(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	i := NewInitiator()
	a := newBackingFile(t, 16<<20)
	b := newBackingFile(t, 16<<20)

	if _, err := i.Attach(ctx, "vol-a", publishContext("vol-b", a)); err == nil {
		t.Fatal("Attach with a publish context of another volume succeeded")
	}
	devB, err := i.Attach(ctx, "vol-b", publishContext("vol-b", b))
	if err != nil {
		t.Fatal(err)
	}
	err = i.DetachDevice(ctx, "vol-a", publishContext("vol-a", a), devB)
	if !errors.Is(err, ErrWrongDevice) {
		t.Fatalf("DetachDevice of another volume's device: err = %v, want ErrWrongDevice", err)
	}
	if cur, _ := i.Device(ctx, "vol-b", publishContext("vol-b", b)); cur != devB {
		t.Fatalf("vol-b's device %s was touched (now %q)", devB, cur)
	}
	if _, err := i.Attach(ctx, "vol-c", publishContext("vol-c", filepath.Join(t.TempDir(), "missing.img"))); !errors.Is(err, ErrBackingFileMissing) {
		t.Fatalf("Attach of a missing file: err = %v, want ErrBackingFileMissing", err)
	}
	if _, err := i.Attach(ctx, "vol-c", map[string]string{}); !errors.Is(err, ErrBadPublishContext) || !strings.Contains(err.Error(), KeyBackingFile) {
		t.Fatalf("Attach without %s: err = %v, want it named", KeyBackingFile, err)
	}
}

func TestInitiatorReadOnlyAndDeletedFile(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	i := NewInitiator()
	backing := newBackingFile(t, 16<<20)
	pc := publishContext("vol-a", backing)

	rw, err := i.Attach(ctx, "vol-a", pc)
	if err != nil {
		t.Fatal(err)
	}
	ro, err := i.AttachReadOnly(ctx, "vol-a", pc)
	if err != nil {
		t.Fatal(err)
	}
	if ro == rw {
		t.Fatalf("read-only attach reused the read-write device %s", rw)
	}
	// The kernel may let the node be opened for writing, but the write must fail.
	if f, err := os.OpenFile(ro, os.O_WRONLY, 0); err == nil {
		_, werr := f.Write(make([]byte, 4096))
		if werr == nil {
			werr = f.Sync()
		}
		f.Close()
		if werr == nil {
			t.Fatalf("write through read-only device %s succeeded", ro)
		}
	}
	if cur, _ := i.Device(ctx, "vol-a", pc); cur != rw {
		t.Fatalf("Device = %q, want the read-write %s", cur, rw)
	}

	bound, err := filepath.EvalSymlinks(backing) // the path sysfs shows
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(backing); err != nil {
		t.Fatal(err)
	}
	if cur, err := i.Device(ctx, "vol-a", pc); err != nil || cur != "" {
		t.Fatalf("Device after the backing file was deleted = %q, %v; want none", cur, err)
	}
	// Detach still finds and frees both devices of the deleted file.
	if err := i.Detach(ctx, "vol-a", pc); err != nil {
		t.Fatal(err)
	}
	// A freed device number may at once serve another process's file (the
	// plugin's tests attach loop devices beside these): only ours must be gone.
	for _, d := range []string{rw, ro} {
		file, _, err := i.BackingFileOf(d)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("reading %s's backing file after Detach: %v", d, err)
		}
		if err == nil && file == bound {
			t.Fatalf("%s still bound to %s after Detach", d, bound)
		}
	}
}

// A device that another process has open when it is detached stays bound
// until the last close (the kernel's autoclear); Detach waits for that rather
// than answering success while the device still reaches the volume's file.
func TestDetachWaitsForAnotherOpener(t *testing.T) {
	ctx := context.Background()
	i, pc, dev := attachedVolume(t, "vol-held")
	held, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	const hold = 300 * time.Millisecond
	start := time.Now()
	go func() {
		time.Sleep(hold)
		held.Close()
	}()
	if err := i.Detach(ctx, "vol-held", pc); err != nil {
		t.Fatalf("Detach while another opener holds %s for %v: %v", dev, hold, err)
	}
	if took := time.Since(start); took < hold {
		t.Errorf("Detach returned after %v, before the other opener closed the device (%v)", took, hold)
	}
	if cur, err := i.Device(ctx, "vol-held", pc); err != nil || cur != "" {
		t.Fatalf("Device right after Detach = %q, %v; want none", cur, err)
	}
}

// A device bound by an earlier plugin container names its file by a path of
// that container's mounts; once they are gone, sysfs shows the path relative
// to the vanished mount ("/vol.img"). The initiator still knows the device
// as the volume's: Device finds it, Attach reuses it, DetachDevice and Detach
// free it. Reproduced with a mount namespace that binds the volume's
// directory elsewhere and exits after losetup.
func TestInitiatorFindsDeviceBoundInAVanishedMount(t *testing.T) {
	requireRoot(t)
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Fatalf("unshare (util-linux, beside losetup) is missing: %v", err)
	}
	ctx := context.Background()
	i := NewInitiator()
	backing := newBackingFile(t, 16<<20)
	pc := publishContext("vol-ns", backing)
	inner := t.TempDir()
	script := `mount --make-rprivate / && mount --bind "$1" "$2" && losetup --find --show "$2/vol.img"`
	out, err := exec.Command(unshare, "--mount", "sh", "-c", script, "sh", filepath.Dir(backing), inner).CombinedOutput()
	if err != nil {
		t.Fatalf("binding the volume in another mount namespace: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { _, _ = i.run(context.Background(), "--detach", dev) })
	if got, _, err := i.BackingFileOf(dev); err != nil || got == backing {
		t.Fatalf("sysfs names %s's file %q (%v); the test needs a path other than %s", dev, got, err, backing)
	}

	if cur, err := i.Device(ctx, "vol-ns", pc); err != nil || cur != dev {
		t.Fatalf("Device = %q, %v; want %s, bound in the vanished mount", cur, err, dev)
	}
	if again, err := i.Attach(ctx, "vol-ns", pc); err != nil || again != dev {
		t.Fatalf("Attach = %q, %v; want the existing %s", again, err, dev)
	}
	if err := i.DetachDevice(ctx, "vol-ns", pc, dev); err != nil {
		t.Fatalf("DetachDevice(%s): %v", dev, err)
	}
	if cur, err := i.Device(ctx, "vol-ns", pc); err != nil || cur != "" {
		t.Fatalf("Device after DetachDevice = %q, %v; want none", cur, err)
	}

	// The same through Detach, which finds the device itself.
	out, err = exec.Command(unshare, "--mount", "sh", "-c", script, "sh", filepath.Dir(backing), inner).CombinedOutput()
	if err != nil {
		t.Fatalf("binding the volume again: %v: %s", err, out)
	}
	dev = strings.TrimSpace(string(out))
	if err := i.Detach(ctx, "vol-ns", pc); err != nil {
		t.Fatal(err)
	}
	if cur, err := i.Device(ctx, "vol-ns", pc); err != nil || cur != "" {
		t.Fatalf("Device after Detach = %q, %v; want none (%s left bound)", cur, err, dev)
	}
}
