package plugin

import (
	"os"
	"os/exec"
	"testing"

	"github.com/csi-hub/csi-hub/plugin/transport/loop"
)

func TestParseFilesystemSizes(t *testing.T) {
	ext := []byte("Filesystem volume name:   <none>\nBlock count:              81920\nReserved block count:     0\nBlock size:               4096\n")
	if bs, n, err := extGeometry.parse(ext); err != nil || bs != 4096 || n != 81920 {
		t.Errorf("ext geometry = %d, %d, %v; want 4096, 81920", bs, n, err)
	}
	xfs := []byte("fd.path = \"/mnt\"\nstatfs.f_bsize = 4096\nstatfs.f_blocks = 65536\n" +
		"geom.bsize = 4096\ngeom.agcount = 4\ngeom.agblocks = 20480\ngeom.datablocks = 81920\ngeom.rtblocks = 0\n")
	if bs, n, err := xfsGeometry.parse(xfs); err != nil || bs != 4096 || n != 81920 {
		t.Errorf("xfs geometry = %d, %d, %v; want 4096, 81920 (the data section, not statfs' f_blocks)", bs, n, err)
	}
	for name, keys := range map[string]geometryKeys{"ext": extGeometry, "xfs": xfsGeometry} {
		if _, _, err := keys.parse([]byte("dumpe2fs: Bad magic number in super-block\n")); err == nil {
			t.Errorf("%s parser accepted output without sizes", name)
		}
	}
}

// TestNeedsGrowComparesSizes: a freshly formatted volume fills its device
// (nothing to grow at the next stage), and one whose device grew under it
// needs growing, for ext4 and xfs on real loop devices.
func TestNeedsGrowComparesSizes(t *testing.T) {
	requireRootNode(t)
	t.Parallel()
	for _, fsType := range []string{"ext4", "xfs"} {
		t.Run(fsType, func(t *testing.T) {
			t.Parallel()
			e := newNodeEnv(t)
			id := "vol-size-" + fsType
			const before, after = 320 << 20, 400 << 20
			pc := e.newVolume(id, before)
			staging := e.path("staging")
			must(t, "stage", e.stage(id, pc, staging, mountCap(fsType, snw), nil))
			rec, err := e.node.records.load(id)
			must(t, "load node record", err)
			if need, err := e.node.needsGrow(rec); err != nil || need {
				t.Errorf("fresh %s filesystem: needsGrow = %v, %v; want false", fsType, need, err)
			}
			must(t, "grow backing file", os.Truncate(pc[loop.KeyBackingFile], after))
			if out, err := exec.Command("losetup", "--set-capacity", rec.Device).CombinedOutput(); err != nil {
				t.Fatalf("losetup --set-capacity %s: %v: %s", rec.Device, err, out)
			}
			if need, err := e.node.needsGrow(rec); err != nil || !need {
				t.Errorf("%s filesystem on a grown device: needsGrow = %v, %v; want true", fsType, need, err)
			}
			must(t, "unstage", e.unstage(id, staging))
			e.requireClean()
		})
	}
}
