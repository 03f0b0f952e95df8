package resizer

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	v1 "k8s.io/api/core/v1"

	"github.com/csi-hub/csi-hub/plugin/plugintest"
	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// The companion driver (real pool files on disk) through the hub: expansion
// grows the volume's file while a Pod uses the claim and waits for the node
// (the plugin always needs node expansion); class "thick" preallocates the file.
func TestCompanionPluginExpandAndModify(t *testing.T) {
	// The fake driver only provides the env's cluster, namespace and class
	// helpers; the hub below talks to the companion plugin.
	e := newEnv(t, fakedriver.Options{}, DefaultConfig())
	e.hub.Stop()
	d := plugintest.Start(t, plugintest.Options{DriverName: "plugin." + e.driver})
	e.driver, e.socket = d.DriverName, d.SocketPath
	e.opts.CSIAddress = d.SocketPath
	e.startHub()

	resp, err := d.ControllerClient().CreateVolume(e.ctx, &csi.CreateVolumeRequest{
		Name:               e.ns + "-data",
		CapacityRange:      &csi.CapacityRange{RequiredBytes: 64 << 20},
		VolumeCapabilities: []*csi.VolumeCapability{{AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: "ext4"}}, AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	id := resp.GetVolume().GetVolumeId()
	pvc, pv := e.boundVolume("data", "64Mi", func(pv *v1.PersistentVolume, _ *v1.PersistentVolumeClaim) {
		pv.Spec.CSI.Driver, pv.Spec.CSI.VolumeHandle = d.DriverName, id
	})
	file := poolFile(t, d.PoolDir, id)
	// A Pod uses the claim: the plugin expands in use, so the in-use
	// handling (on by default) must not hold the expansion back.
	e.createPod("app", pvc.Name, false)

	e.request(pvc.Name, "128Mi")
	pvc = e.waitPVC(pvc.Name, "FileSystemResizePending", func(c *v1.PersistentVolumeClaim) bool {
		_, ok := condition(c, v1.PersistentVolumeClaimFileSystemResizePending)
		return ok
	})
	if got := e.pv(pv.Name).Spec.Capacity[v1.ResourceStorage]; !quantityIs(got, "128Mi") {
		t.Errorf("PV capacity = %s, want 128Mi", got.String())
	}
	if fi, err := os.Stat(file); err != nil || fi.Size() != 128<<20 {
		t.Errorf("volume file %s: size %v (err %v), want %d", file, fi.Size(), err, 128<<20)
	}

	thick := e.class("thick", map[string]string{"type": "thick"})
	if err := e.setClass(pvc.Name, thick); err != nil {
		t.Fatal(err)
	}
	e.waitPVC(pvc.Name, "current class "+thick, modified(thick))
	var st syscall.Stat_t
	if err := syscall.Stat(file, &st); err != nil {
		t.Fatal(err)
	}
	if allocated := st.Blocks * 512; allocated < 128<<20 {
		t.Errorf("volume file has %d bytes allocated after class %s, want the full 128Mi preallocated", allocated, thick)
	}
}

func poolFile(t *testing.T, dir, id string) string {
	t.Helper()
	matches, _ := filepath.Glob(filepath.Join(dir, id+"*"))
	if len(matches) != 1 {
		all, _ := filepath.Glob(filepath.Join(dir, "*"))
		t.Fatalf("volume %s: files %v in pool %s, want exactly one (all: %v)", id, matches, dir, all)
	}
	return matches[0]
}
