package snapshotter_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/csi-hub/csi-hub/internal/testutil"
	"github.com/csi-hub/csi-hub/plugin/plugintest"
	"github.com/csi-hub/csi-hub/test/cluster"
)

// TestCompanionPlugin: the same protocol with csi-hub's own driver
// (block.csi-hub.io, in-process, real files in a pool directory): the
// snapshot is a real copy of the volume's data, and deleting the
// VolumeSnapshot removes the snapshot's file.
func TestCompanionPlugin(t *testing.T) {
	e := newBareEnv(t, cluster.Shared(t), "plugin")
	e.name = e.ns + ".block.csi-hub.io"
	d := plugintest.Start(t, plugintest.Options{DriverName: e.name})
	e.socket = d.SocketPath
	cfg := testConfig()
	cfg.ExtraCreateMetadata = true // the plugin accepts csi.storage.k8s.io/ keys and rejects others
	e.startHub(cfg)

	const size = 8 << 20
	vol, err := d.ControllerClient().CreateVolume(e.ctx, &csi.CreateVolumeRequest{
		Name: e.ns + "-data", CapacityRange: &csi.CapacityRange{RequiredBytes: size},
		VolumeCapabilities: []*csi.VolumeCapability{{
			AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
			AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	volID := vol.GetVolume().GetVolumeId()
	marker := bytes.Repeat([]byte("csi-hub snapshot marker "), 100)
	testutil.WriteAt(t, filepath.Join(d.PoolDir, volID+".img"), 1<<20, marker)
	e.bindPVC("data", volID, "8Mi")
	class := e.class("delete", snapv1.VolumeSnapshotContentDelete, nil)

	began := time.Now()
	e.snapshot("snap", "data", class)
	vs, content := e.waitReady("snap", time.Minute)
	t.Logf("plugin snapshot ready in %s", time.Since(began).Round(time.Millisecond))
	snapFile := filepath.Join(d.PoolDir, *content.Status.SnapshotHandle+".img")
	if got := testutil.ReadAt(t, snapFile, 1<<20, len(marker)); !bytes.Equal(got, marker) {
		t.Errorf("snapshot file does not hold the volume's data at the marker offset")
	}
	if vs.Status.RestoreSize == nil || vs.Status.RestoreSize.Value() != size {
		t.Errorf("restoreSize = %v, want %d", vs.Status.RestoreSize, size)
	}

	if err := e.snaps.SnapshotV1().VolumeSnapshots(e.ns).Delete(e.ctx, "snap", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitContentGone(content.Name, time.Minute)
	if _, err := os.Stat(snapFile); !os.IsNotExist(err) {
		t.Errorf("snapshot file %s still there after deleting the VolumeSnapshot (stat: %v)", snapFile, err)
	}
}
