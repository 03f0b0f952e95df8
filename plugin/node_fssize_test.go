package plugin

import (
	"os"
	"os/exec"
	"testing"

	"github.com/csi-hub/csi-hub/plugin/transport/loop"
)

func TestParseFilesystemSizes(t *testing.T) {
	ext := []byte("Filesystem volume name:   <none>\nBlock count:              81920\nReserved block count:     0\nBlock size:               4096\n")
	if bs, n, err := parseExtSize(ext); err != nil || bs != 4096 || n != 81920 {
		t.Errorf("parseExtSize = %d, %d, %v; want 4096, 81920", bs, n, err)
	}
	xfs := []byte("meta-data=/dev/loop0             isize=512    agcount=4, agsize=20480 blks\n" +
		"         =                       sectsz=512   attr=2, projid32bit=1\n" +
		"data     =                       bsize=4096   blocks=81920, imaxpct=25\n" +
		"naming   =version 2              bsize=4096   ascii-ci=0, ftype=1\n" +
		"log      =internal log           bsize=4096   blocks=16384, version=2\n")
	if bs, n, err := parseXFSSize(xfs); err != nil || bs != 4096 || n != 81920 {
		t.Errorf("parseXFSSize = %d, %d, %v; want 4096, 81920 (the data section, not the log)", bs, n, err)
	}
	for name, parse := range map[string]func([]byte) (uint64, uint64, error){"ext": parseExtSize, "xfs": parseXFSSize} {
		if _, _, err := parse([]byte("dumpe2fs: Bad magic number in super-block\n")); err == nil {
			t.Errorf("%s parser accepted output without sizes", name)
		}
	}
}

// TestNeedsGrowComparesSizes: a freshly formatted volume fills its device
// (nothing to grow at the next stage), and one whose device grew under it
// needs growing, for ext4 and xfs on real loop devices.
func TestNeedsGrowComparesSizes(t *testing.T) {
	requireRootNode(t)
	for _, fsType := range []string{"ext4", "xfs"} {
		t.Run(fsType, func(t *testing.T) {
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
