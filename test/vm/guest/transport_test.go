//go:build vmguest

package guest

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"

	"github.com/csi-hub/csi-hub/plugin/transport"
	"github.com/csi-hub/csi-hub/plugin/transport/nvme"
)

// TestTransport drives the nvme Target and Initiator against the real nvmet
// target and nvme-tcp initiator over 127.0.0.1:4420: export, publish, attach,
// mkfs, mount, write, detach, attach again, read, grow, and the failures a
// node meets (host not allowed, target unreachable, wrong serial), each of
// which must leave nothing connected.
func TestTransport(t *testing.T) {
	requireVM(t)
	ctx := context.Background()
	hostNQN, err := nvme.HostNQN()
	if err != nil {
		t.Fatal(err)
	}
	// /etc/nvme/hostnqn did not exist: it was made from the machine's DMI UUID (qemu -uuid).
	dmi, _ := os.ReadFile("/sys/class/dmi/id/product_uuid")
	if want := "nqn.2014-08.org.nvmexpress:uuid:" + strings.ToLower(strings.TrimSpace(string(dmi))); hostNQN != want {
		t.Fatalf("host NQN %q, want %q", hostNQN, want)
	}
	if b, err := os.ReadFile(nvme.DefaultHostNQNFile); err != nil || strings.TrimSpace(string(b)) != hostNQN {
		t.Fatalf("%s holds %q, %v", nvme.DefaultHostNQNFile, b, err)
	}
	t.Logf("host NQN %s", hostNQN)
	tg, err := nvme.NewTarget(nvme.TargetConfig{ListenAddress: "127.0.0.1", TopologyKey: "topology.block.csi-hub.io/zone", TopologyValue: "vm"})
	if err != nil {
		t.Fatal(err)
	}
	ini, err := nvme.NewInitiator(nvme.InitiatorConfig{HostNQN: hostNQN, AttachTimeout: 15 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	vol := transport.Volume{ID: "vol-0123456789abcdef", BackingFile: "/tmp/pool/vol-0123456789abcdef.img", SizeBytes: 64 << 20}
	makeBackingFile(t, vol.BackingFile, vol.SizeBytes)

	if err := tg.Export(ctx, vol); err != nil {
		t.Fatal(err)
	}
	if err := tg.Export(ctx, vol); err != nil {
		t.Fatalf("second export: %v", err)
	}
	// The backing file is on tmpfs, which has no O_DIRECT: auto must pick buffered I/O.
	if b, _ := os.ReadFile(filepath.Join(nvmetRoot, "subsystems", nvme.SubsystemNQN(vol.ID), "namespaces", "1", "buffered_io")); strings.TrimSpace(string(b)) != "1" {
		t.Errorf("buffered_io on tmpfs is %q, want 1", b)
	}

	// Not yet published: the target must refuse this host, and the failed
	// connect must leave no controller behind.
	start := time.Now()
	_, err = ini.Attach(ctx, vol.ID, map[string]string{transport.KeyTransport: "nvme", transport.KeyVolumeID: vol.ID,
		nvme.KeyTraddr: "127.0.0.1", nvme.KeyTrsvcid: "4420", nvme.KeyNQN: nvme.SubsystemNQN(vol.ID)})
	wantCode(t, err, codes.Unavailable, nvme.SubsystemNQN(vol.ID), hostNQN, "127.0.0.1:4420")
	t.Logf("refused connect took %v", time.Since(start))
	if left := nvmeControllers(t); len(left) > 0 {
		t.Fatalf("refused connect left %v", left)
	}

	pc, err := tg.Publish(ctx, vol, hostNQN)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("publish context %v", pc)

	// Target unreachable: nothing listens on 4421.
	bad := clone(pc)
	bad[nvme.KeyTrsvcid] = "4421"
	_, err = ini.Attach(ctx, vol.ID, bad)
	wantCode(t, err, codes.Unavailable, "127.0.0.1:4421")
	if left := nvmeControllers(t); len(left) > 0 {
		t.Fatalf("unreachable target left %v", left)
	}

	start = time.Now()
	dev, err := ini.Attach(ctx, vol.ID, pc)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("attached %s in %v", dev, time.Since(start))
	if again, err := ini.Attach(ctx, vol.ID, pc); err != nil || again != dev {
		t.Fatalf("second attach: %q, %v", again, err)
	}
	uuid, _ := os.ReadFile(filepath.Join("/sys/block", filepath.Base(dev), "uuid"))
	if strings.TrimSpace(string(uuid)) != nvme.NamespaceUUID(vol.ID) {
		t.Errorf("namespace UUID %q, want %s", uuid, nvme.NamespaceUUID(vol.ID))
	}
	serial, _ := os.ReadFile("/sys/class/nvme/" + nvmeControllers(t)[0] + "/serial")
	if strings.TrimSpace(string(serial)) != vol.ID {
		t.Errorf("controller serial %q, want %s", serial, vol.ID)
	}

	mnt := "/tmp/mnt/raw"
	os.MkdirAll(mnt, 0o755)
	run(t, "mkfs.ext4", "-q", "-F", dev)
	run(t, "mount", "-t", "ext4", dev, mnt)
	if err := os.WriteFile(filepath.Join(mnt, "data"), []byte("written through nvme-tcp\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "umount", mnt)
	if err := ini.Detach(ctx, vol.ID, pc); err != nil {
		t.Fatal(err)
	}
	if left := nvmeControllers(t); len(left) > 0 {
		t.Fatalf("detach left %v", left)
	}
	if d, err := ini.Device(ctx, vol.ID, pc); err != nil || d != "" {
		t.Fatalf("Device after detach: %q, %v", d, err)
	}

	dev, err = ini.Attach(ctx, vol.ID, pc)
	if err != nil {
		t.Fatal(err)
	}
	run(t, "mount", "-t", "ext4", dev, mnt)
	if b, err := os.ReadFile(filepath.Join(mnt, "data")); err != nil || string(b) != "written through nvme-tcp\n" {
		t.Fatalf("data after re-attach: %q, %v", b, err)
	}

	// Grow: backing file, revalidate on the target, rescan on the node, resize2fs.
	before := fsSize(t, mnt)
	if err := os.Truncate(vol.BackingFile, 128<<20); err != nil {
		t.Fatal(err)
	}
	if err := tg.Resized(ctx, vol); err != nil {
		t.Fatal(err)
	}
	if err := ini.Rescan(ctx, vol.ID, dev); err != nil {
		t.Fatal(err)
	}
	if got := blockSize(t, dev); got != 128<<20 {
		t.Fatalf("device is %d bytes after rescan, want %d", got, 128<<20)
	}
	run(t, "resize2fs", dev)
	if after := fsSize(t, mnt); after < before+50<<20 {
		t.Errorf("filesystem %d -> %d bytes: did not grow by 64 MiB", before, after)
	}
	run(t, "umount", mnt)
	if err := ini.Detach(ctx, vol.ID, pc); err != nil {
		t.Fatal(err)
	}
	if err := ini.Detach(ctx, vol.ID, pc); err != nil {
		t.Fatalf("second detach: %v", err)
	}

	// A subsystem whose serial names another volume is refused and disconnected.
	evil := transport.Volume{ID: "vol-00000000000000aa", BackingFile: "/tmp/pool/vol-00000000000000aa.img", SizeBytes: 16 << 20}
	makeBackingFile(t, evil.BackingFile, evil.SizeBytes)
	if err := tg.Export(ctx, evil); err != nil {
		t.Fatal(err)
	}
	evilPC, err := tg.Publish(ctx, evil, hostNQN)
	if err != nil {
		t.Fatal(err)
	}
	// Tamper after Publish, whose re-export would restore the right serial.
	serialAttr := filepath.Join(nvmetRoot, "subsystems", nvme.SubsystemNQN(evil.ID), "attr_serial")
	if err := os.WriteFile(serialAttr, []byte(vol.ID), 0); err != nil {
		t.Fatal(err)
	}
	_, err = ini.Attach(ctx, evil.ID, evilPC)
	wantCode(t, err, codes.FailedPrecondition, vol.ID, evil.ID, "refusing")
	if left := nvmeControllers(t); len(left) > 0 {
		t.Fatalf("refused device left %v connected", left)
	}

	for _, v := range []transport.Volume{vol, evil} {
		if err := tg.Unpublish(ctx, v, hostNQN); err != nil {
			t.Fatal(err)
		}
		if err := tg.Unexport(ctx, v); err != nil {
			t.Fatal(err)
		}
		if err := tg.Unexport(ctx, v); err != nil {
			t.Fatalf("second unexport: %v", err)
		}
	}
	assertClean(t, "/tmp/mnt")
}

func clone(m map[string]string) map[string]string {
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

func fsSize(t *testing.T, path string) int64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Blocks) * st.Bsize
}

func blockSize(t *testing.T, dev string) int64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(dev), "size"))
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n * 512
}
