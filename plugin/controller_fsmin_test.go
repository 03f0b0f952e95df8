package plugin_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"

	"github.com/csi-hub/csi-hub/plugin/plugintest"
)

// TestCreateRoundsUpToFilesystemMinimum: the storage e2e suite asks for 1 MiB
// volumes of every fs type it tests; a 1 MiB ext3 came out journal-less and
// failed to mount as ext3, and mkfs.xfs refuses anything under 300 MiB.
func TestCreateRoundsUpToFilesystemMinimum(t *testing.T) {
	d := plugintest.Start(t, plugintest.Options{})
	cc := d.ControllerClient()
	ctx := context.Background()
	withFs := func(name, fsType string, required, limit int64) *csi.CreateVolumeRequest {
		c := mountCap()
		c.GetMount().FsType = fsType
		return &csi.CreateVolumeRequest{Name: name, CapacityRange: &csi.CapacityRange{RequiredBytes: required, LimitBytes: limit},
			VolumeCapabilities: []*csi.VolumeCapability{c}}
	}
	for _, tc := range []struct {
		fsType string
		want   int64
	}{{"ext4", mib}, {"ext3", 4 * mib}, {"xfs", 300 * mib}} {
		v := mustCreate(t, cc, withFs("small-"+tc.fsType, tc.fsType, mib, 0))
		if v.GetCapacityBytes() != tc.want {
			t.Errorf("%s: 1 MiB request made %d bytes, want %d", tc.fsType, v.GetCapacityBytes(), tc.want)
		}
	}
	// Block volumes have no filesystem to fit.
	blk := createReq("small-block", mib, nil)
	blk.VolumeCapabilities = []*csi.VolumeCapability{blockCap()}
	if v := mustCreate(t, cc, blk); v.GetCapacityBytes() != mib {
		t.Errorf("block: %d bytes, want %d", v.GetCapacityBytes(), mib)
	}
	_, err := cc.CreateVolume(ctx, withFs("capped-xfs", "xfs", mib, 2*mib))
	wantCode(t, err, codes.OutOfRange, "xfs")
}

// TestExt3MinimumHasJournal: at the minimum size mkfs.ext3 (as the node runs
// it through mount-utils: -F -m0) still writes a journal, so the result mounts as ext3.
func TestExt3MinimumHasJournal(t *testing.T) {
	if _, err := exec.LookPath("mkfs.ext3"); err != nil {
		t.Skip("SKIPPING: mkfs.ext3 missing (hack/install-deps.sh installs e2fsprogs)")
	}
	img := filepath.Join(t.TempDir(), "ext3.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 4*mib); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext3", "-F", "-m0", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext3: %v: %s", err, out)
	}
	out, err := exec.Command("dumpe2fs", "-h", img).CombinedOutput()
	if err != nil {
		t.Fatalf("dumpe2fs: %v: %s", err, out)
	}
	if !strings.Contains(string(out), "has_journal") {
		t.Fatalf("a 4 MiB ext3 has no journal:\n%s", out)
	}
}
