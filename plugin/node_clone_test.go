package plugin

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/csi-hub/csi-hub/plugin/transport/loop"
)

// A clone or a restored snapshot is a byte copy of its source, filesystem
// UUID included, and the kubelet may stage both on one node (upstream's
// multiVolume "concurrently access the volume and its clone from pods on the
// same node"). XFS refuses to mount a second filesystem with a UUID already
// mounted unless told nouuid; ext4 does not care. Both must stage side by
// side and keep their own data.
func TestStageVolumeAndItsCopyOnOneNode(t *testing.T) {
	requireRootNode(t)
	t.Parallel()
	for _, fs := range []struct {
		fsType string
		size   int64
	}{{"xfs", 320 << 20}, {"ext4", 64 << 20}} {
		t.Run(fs.fsType, func(t *testing.T) {
			t.Parallel()
			e := newNodeEnv(t)
			vc := mountCap(fs.fsType, snw)
			src := e.newVolume("vol-src", fs.size)
			stagingSrc := e.path("staging-src")
			must(t, "stage the source", e.stage("vol-src", src, stagingSrc, vc, nil))
			must(t, "write to the source", os.WriteFile(filepath.Join(stagingSrc, "data"), []byte("source"), 0o600))
			must(t, "unstage the source", e.unstage("vol-src", stagingSrc))

			clone := e.newVolume("vol-clone", fs.size)
			copyFile(t, src[loop.KeyBackingFile], clone[loop.KeyBackingFile])
			must(t, "stage the source again", e.stage("vol-src", src, stagingSrc, vc, nil))
			stagingClone := e.path("staging-clone")
			must(t, "stage the clone beside its source", e.stage("vol-clone", clone, stagingClone, vc, nil))

			must(t, "write to the clone", os.WriteFile(filepath.Join(stagingClone, "data"), []byte("clone"), 0o600))
			if got, err := os.ReadFile(filepath.Join(stagingSrc, "data")); err != nil || string(got) != "source" {
				t.Errorf("source data %q, %v after writing the clone; want %q", got, err, "source")
			}
			must(t, "unstage the clone", e.unstage("vol-clone", stagingClone))
			must(t, "unstage the source", e.unstage("vol-src", stagingSrc))
			e.requireClean()
		})
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
