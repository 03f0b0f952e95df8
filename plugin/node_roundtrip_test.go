package plugin

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
)

// TestNodeMountRoundTrip stages, publishes, unpublishes and unstages a volume
// with real loop devices and real ext4/xfs mounts, each step twice
// (idempotency), and checks /proc/mounts and losetup -a are clean afterwards
// and that restaging keeps the data (a formatted volume is never reformatted).
func TestNodeMountRoundTrip(t *testing.T) {
	requireRootNode(t)
	t.Parallel()
	for _, fs := range []struct {
		fsType string
		size   int64
	}{{"ext4", 64 << 20}, {"xfs", 320 << 20}} {
		t.Run(fs.fsType, func(t *testing.T) {
			t.Parallel()
			if _, err := exec.LookPath("mkfs." + fs.fsType); err != nil {
				t.Fatalf("mkfs.%s missing: install it (xfsprogs; hack/install-deps.sh)", fs.fsType)
			}
			e := newNodeEnv(t)
			id := "vol-" + fs.fsType
			pc := e.newVolume(id, fs.size)
			staging, target := e.path("staging"), e.path("pods/target")
			vc := mountCap(fs.fsType, snw)

			for i := range 2 {
				must(t, "stage", e.stage(id, pc, staging, vc, nil))
				must(t, "publish", e.publish(id, pc, staging, target, vc, false))
				if i == 0 {
					must(t, "write through the publish path", os.WriteFile(filepath.Join(target, "data"), []byte("kept"), 0o600))
				} else if got, err := os.ReadFile(filepath.Join(target, "data")); err != nil || string(got) != "kept" {
					t.Fatalf("after restage the data is %q, %v: the volume was reformatted", got, err)
				}
			}
			mounts := e.mountsBelowRoot()
			if len(mounts) != 2 || mounts[0] != staging || mounts[1] != target {
				t.Fatalf("/proc/mounts below the test root = %v; want exactly [%s %s]", mounts, staging, target)
			}
			if len(e.loopDevicesOfRoot()) != 1 {
				t.Fatalf("want one loop device, losetup -a shows %v", e.loopDevicesOfRoot())
			}
			stats, err := e.node.NodeGetVolumeStats(context.Background(), &csi.NodeGetVolumeStatsRequest{VolumeId: id, VolumePath: target})
			must(t, "stats", err)
			if len(stats.GetUsage()) != 2 || stats.GetUsage()[0].GetTotal() <= 0 || stats.GetUsage()[1].GetUnit() != csi.VolumeUsage_INODES || stats.GetUsage()[1].GetUsed() <= 0 {
				t.Errorf("stats = %v; want bytes and inodes", stats.GetUsage())
			}

			// Unstage while still published must refuse and leave everything in place.
			wantCode(t, "unstage while published", e.unstage(id, staging), codes.FailedPrecondition, target)
			for range 2 {
				must(t, "unpublish", e.unpublish(id, target))
			}
			if _, err := os.Stat(target); !os.IsNotExist(err) {
				t.Errorf("target path still exists after unpublish: %v", err)
			}
			for range 2 {
				must(t, "unstage", e.unstage(id, staging))
			}
			e.requireClean()
			if _, err := e.node.records.load(id); err != errNoRecord {
				t.Errorf("node record left after unstage: %v", err)
			}
		})
	}
}

// TestNodeMkfsOptionsAndMountFlags checks blockSize from the volume context
// reaches mkfs, and read-only and mount flags reach the publish mount.
func TestNodeMkfsOptionsAndMountFlags(t *testing.T) {
	requireRootNode(t)
	t.Parallel()
	e := newNodeEnv(t)
	pc := e.newVolume("vol-opts", 64<<20)
	staging, rw, ro := e.path("staging"), e.path("rw"), e.path("ro")
	vc := mountCap("ext4", snw, "noexec")
	must(t, "stage", e.stage("vol-opts", pc, staging, vc, map[string]string{ParamBlockSize: "1024", ParamInodeSize: "512"}))
	if bs := statfs(t, staging).Bsize; bs != 1024 {
		t.Errorf("filesystem block size = %d, want the 1024 of volume_context", bs)
	}
	must(t, "publish rw", e.publish("vol-opts", pc, staging, rw, vc, false))
	must(t, "publish ro", e.publish("vol-opts", pc, staging, ro, vc, true))
	if f := statfs(t, ro).Flags; f&0x1 == 0 { // ST_RDONLY
		t.Errorf("read-only publish is writable (statfs flags %#x)", f)
	}
	if err := os.WriteFile(filepath.Join(ro, "x"), nil, 0o600); err == nil {
		t.Error("write through the read-only publish succeeded")
	}
	if f := statfs(t, rw).Flags; f&0x8 == 0 { // ST_NOEXEC
		t.Errorf("mount flag noexec not honoured (statfs flags %#x)", f)
	}
	wantCode(t, "republish with another readonly", e.publish("vol-opts", pc, staging, ro, vc, false), codes.AlreadyExists, "readonly")
	must(t, "unpublish rw", e.unpublish("vol-opts", rw))
	must(t, "unpublish ro", e.unpublish("vol-opts", ro))
	must(t, "unstage", e.unstage("vol-opts", staging))
	e.requireClean()
}

// TestNodeBlockRoundTrip publishes a raw block volume read-write and read-only
// and checks writes reach the volume only through the read-write one.
func TestNodeBlockRoundTrip(t *testing.T) {
	requireRootNode(t)
	t.Parallel()
	e := newNodeEnv(t)
	pc := e.newVolume("vol-blk", 32<<20)
	staging, rw, ro := e.path("staging"), e.path("pods/rw"), e.path("pods/ro")
	must(t, "mkdir staging", os.MkdirAll(staging, 0o750))
	vc := blockCap(snw)
	for range 2 {
		must(t, "stage", e.stage("vol-blk", pc, staging, vc, nil))
	}
	if m := e.mountsBelowRoot(); len(m) != 0 {
		t.Fatalf("block stage mounted something: %v", m)
	}
	for range 2 {
		must(t, "publish rw", e.publish("vol-blk", pc, staging, rw, vc, false))
		must(t, "publish ro", e.publish("vol-blk", pc, staging, ro, vc, true))
	}
	if _, ok, err := blockDeviceNumber(rw); err != nil || !ok {
		t.Fatalf("publish path %s is not a block device node (%v)", rw, err)
	}
	f, err := os.OpenFile(rw, os.O_WRONLY, 0)
	must(t, "open rw", err)
	_, err = f.WriteAt([]byte("hello"), 4096)
	must(t, "write rw", err)
	must(t, "sync rw", f.Sync())
	f.Close()
	if f, err := os.OpenFile(ro, os.O_WRONLY, 0); err == nil {
		_, werr := f.WriteAt([]byte("x"), 0)
		if werr == nil {
			werr = f.Sync()
		}
		f.Close()
		if werr == nil {
			t.Error("write through the read-only block publish succeeded")
		}
	}
	stats, err := e.node.NodeGetVolumeStats(context.Background(), &csi.NodeGetVolumeStatsRequest{VolumeId: "vol-blk", VolumePath: rw})
	must(t, "stats", err)
	if u := stats.GetUsage(); len(u) != 1 || u[0].GetTotal() != 32<<20 || u[0].GetUnit() != csi.VolumeUsage_BYTES {
		t.Errorf("block stats = %v; want total 32 MiB in bytes", u)
	}
	for range 2 {
		must(t, "unpublish rw", e.unpublish("vol-blk", rw))
		must(t, "unpublish ro", e.unpublish("vol-blk", ro))
	}
	if l := e.loopDevicesOfRoot(); len(l) != 1 {
		t.Errorf("after unpublish want only the staged device, losetup -a shows %v", l)
	}
	for range 2 {
		must(t, "unstage", e.unstage("vol-blk", staging))
	}
	e.requireClean()
	raw, err := os.ReadFile(pc["loop.backingFile"])
	must(t, "read backing file", err)
	if string(raw[4096:4101]) != "hello" {
		t.Errorf("data written through the block publish did not reach the backing file")
	}
}

// TestNodeRestartSafe checks a fresh node server (as after a plugin restart)
// finds what an earlier one staged and published, and undoes it.
func TestNodeRestartSafe(t *testing.T) {
	requireRootNode(t)
	t.Parallel()
	e := newNodeEnv(t)
	for _, block := range []bool{false, true} {
		id, vc := "vol-restart-fs", mountCap("ext4", snw)
		if block {
			id, vc = "vol-restart-blk", blockCap(snw)
		}
		pc := e.newVolume(id, 64<<20)
		staging, target := e.path(id+"/staging"), e.path(id+"/target")
		must(t, "mkdir", os.MkdirAll(staging, 0o750))
		must(t, "stage", e.stage(id, pc, staging, vc, nil))
		must(t, "publish", e.publish(id, pc, staging, target, vc, block))
	}
	e.node = e.newServer()
	for _, id := range []string{"vol-restart-fs", "vol-restart-blk"} {
		staging, target := e.path(id+"/staging"), e.path(id+"/target")
		if _, err := e.node.NodeGetVolumeStats(context.Background(), &csi.NodeGetVolumeStatsRequest{VolumeId: id, VolumePath: target}); err != nil {
			t.Errorf("stats of %s after restart: %v", id, err)
		}
		must(t, "unpublish after restart", e.unpublish(id, target))
		must(t, "unstage after restart", e.unstage(id, staging))
	}
	e.requireClean()
}

// TestNodeSingleWriter checks SINGLE_NODE_SINGLE_WRITER allows one publish only.
func TestNodeSingleWriter(t *testing.T) {
	requireRootNode(t)
	t.Parallel()
	e := newNodeEnv(t)
	pc := e.newVolume("vol-sw", 64<<20)
	vc := mountCap("ext4", csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER)
	staging := e.path("staging")
	must(t, "stage", e.stage("vol-sw", pc, staging, vc, nil))
	must(t, "publish", e.publish("vol-sw", pc, staging, e.path("a"), vc, false))
	wantCode(t, "second publish", e.publish("vol-sw", pc, staging, e.path("b"), vc, false), codes.FailedPrecondition, "SINGLE_NODE_SINGLE_WRITER")
	must(t, "unpublish", e.unpublish("vol-sw", e.path("a")))
	must(t, "publish after unpublish", e.publish("vol-sw", pc, staging, e.path("b"), vc, false))
	must(t, "unpublish", e.unpublish("vol-sw", e.path("b")))
	must(t, "unstage", e.unstage("vol-sw", staging))
	e.requireClean()
}

// TestNodeStageRefusesMismatch checks a volume holding another filesystem is
// neither reformatted nor left attached, and a restage with another capability
// is refused.
func TestNodeStageRefusesMismatch(t *testing.T) {
	requireRootNode(t)
	t.Parallel()
	e := newNodeEnv(t)
	pc := e.newVolume("vol-mm", 320<<20)
	staging := e.path("staging")
	must(t, "stage ext4", e.stage("vol-mm", pc, staging, mountCap("ext4", snw), nil))
	wantCode(t, "restage as xfs", e.stage("vol-mm", pc, staging, mountCap("xfs", snw), nil), codes.AlreadyExists, "ext4", "xfs")
	wantCode(t, "restage elsewhere", e.stage("vol-mm", pc, e.path("other"), mountCap("ext4", snw), nil), codes.FailedPrecondition, staging)
	wantCode(t, "publish as block", e.publish("vol-mm", pc, staging, e.path("t"), blockCap(snw), false), codes.FailedPrecondition, "block")
	must(t, "unstage", e.unstage("vol-mm", staging))

	wantCode(t, "stage ext4 volume as xfs", e.stage("vol-mm", pc, staging, mountCap("xfs", snw), nil), codes.FailedPrecondition, "ext4", "xfs")
	e.requireClean() // rolled back: nothing mounted, nothing attached
	if _, err := e.node.records.load("vol-mm"); err != errNoRecord {
		t.Errorf("failed stage left a node record: %v", err)
	}
	wantCode(t, "stage blank volume read-only", e.stage("vol-blank", e.newVolume("vol-blank", 16<<20), e.path("s2"),
		mountCap("ext4", csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY), nil), codes.FailedPrecondition, "blank")
	missing := e.newVolume("vol-gone", 16<<20)
	must(t, "remove backing file", os.Remove(missing["loop.backingFile"]))
	wantCode(t, "stage a volume whose file is gone", e.stage("vol-gone", missing, e.path("s3"), mountCap("ext4", snw), nil), codes.NotFound, "vol-gone")
	e.requireClean()
}

// TestNodeConcurrentStage races several stages and publishes of one volume:
// each call succeeds or is answered Aborted, and the end state is one device,
// one staging mount and one publish mount.
func TestNodeConcurrentStage(t *testing.T) {
	requireRootNode(t)
	t.Parallel()
	e := newNodeEnv(t)
	pc := e.newVolume("vol-race", 64<<20)
	staging, target := e.path("staging"), e.path("target")
	vc := mountCap("ext4", snw)
	race := func(what string, call func() error) {
		errs := make(chan error, 6)
		for range cap(errs) {
			go func() { errs <- call() }()
		}
		for range cap(errs) {
			if err := <-errs; err != nil {
				wantCode(t, what+" racing", err, codes.Aborted, "vol-race")
			}
		}
		must(t, what+" after the race", call()) // retried as the CO would
	}
	race("stage", func() error { return e.stage("vol-race", pc, staging, vc, nil) })
	race("publish", func() error { return e.publish("vol-race", pc, staging, target, vc, false) })
	if m, l := e.mountsBelowRoot(), e.loopDevicesOfRoot(); len(m) != 2 || len(l) != 1 {
		t.Errorf("after racing: mounts %v, loop devices %v; want 2 mounts and 1 device", m, l)
	}
	race("unpublish", func() error { return e.unpublish("vol-race", target) })
	race("unstage", func() error { return e.unstage("vol-race", staging) })
	e.requireClean()
}

// TestNodeRestageAfterReboot simulates a node reboot under a staged volume (its
// mount and loop device vanish, the record stays): NodeStageVolume must notice
// the stale record, attach and mount again without reformatting.
func TestNodeRestageAfterReboot(t *testing.T) {
	requireRootNode(t)
	t.Parallel()
	e := newNodeEnv(t)
	pc := e.newVolume("vol-reboot", 64<<20)
	staging := e.path("staging")
	vc := mountCap("ext4", snw)
	must(t, "stage", e.stage("vol-reboot", pc, staging, vc, nil))
	must(t, "write", os.WriteFile(filepath.Join(staging, "data"), []byte("kept"), 0o600))
	rec, err := e.node.records.load("vol-reboot")
	must(t, "record", err)

	must(t, "umount behind the plugin's back", exec.Command("umount", staging).Run())
	must(t, "losetup -d behind the plugin's back", exec.Command("losetup", "--detach", rec.Device).Run())
	e.requireClean()

	e.node = e.newServer()
	must(t, "restage", e.stage("vol-reboot", pc, staging, vc, nil))
	if got, err := os.ReadFile(filepath.Join(staging, "data")); err != nil || string(got) != "kept" {
		t.Fatalf("after restage the data is %q, %v", got, err)
	}
	must(t, "unstage", e.unstage("vol-reboot", staging))
	e.requireClean()
}
