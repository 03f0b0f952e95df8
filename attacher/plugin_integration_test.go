package attacher_test

import (
	"maps"
	"os"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	storagev1 "k8s.io/api/storage/v1"

	"github.com/csi-hub/csi-hub/plugin/plugintest"
	"github.com/csi-hub/csi-hub/plugin/transport"
	"github.com/csi-hub/csi-hub/plugin/transport/loop"
)

// TestCompanionPlugin attaches a volume of csi-hub's own driver (real pool,
// bbolt record store, loop transport) running in-process: the attachment
// metadata is the loop transport's publish context, and the plugin's record
// of the attachment is gone after the detach.
func TestCompanionPlugin(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIPPING: the companion plugin's pool needs root")
	}
	e := newBaseEnv(t, "plugin")
	d := plugintest.Start(t, plugintest.Options{DriverName: e.name, NodeID: e.nodeID})
	e.socket = d.SocketPath
	e.registerNode()
	e.startHub()
	if e.ctrl.Mode() != "publish" {
		t.Fatalf("mode = %s; the companion plugin advertises PUBLISH_UNPUBLISH_VOLUME", e.ctrl.Mode())
	}
	vol, err := d.ControllerClient().CreateVolume(e.ctx, &csi.CreateVolumeRequest{
		Name:          e.ns + "-data",
		CapacityRange: &csi.CapacityRange{RequiredBytes: 16 << 20},
		VolumeCapabilities: []*csi.VolumeCapability{{
			AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: "ext4"}},
			AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	handle := vol.GetVolume().GetVolumeId()
	pv := e.boundPV("data", handle, nil)
	e.pod("app", "data")
	va := e.va(pv)
	va = e.waitVA(va.Name, "attached", time.Minute, func(va *storagev1.VolumeAttachment) bool { return va.Status.Attached })
	md := va.Status.AttachmentMetadata
	if md[transport.KeyTransport] != loop.Name || md[transport.KeyVolumeID] != handle || md[loop.KeyBackingFile] == "" {
		t.Errorf("attachmentMetadata = %v, want the loop transport's publish context for %s", md, handle)
	}
	published := publishedNodes(t, e, d, handle)
	if len(published) != 1 || published[0] != e.nodeID {
		t.Errorf("plugin lists the volume published to %v, want [%s]", published, e.nodeID)
	}
	t.Logf("attachmentMetadata from the plugin: %v", maps.Collect(maps.All(md)))

	e.deletePod("app")
	e.waitVAGone(va.Name)
	if published := publishedNodes(t, e, d, handle); len(published) != 0 {
		t.Errorf("plugin still lists the volume published to %v after detach", published)
	}
	e.releasePV("data", pv)
}

func publishedNodes(t *testing.T, e *env, d *plugintest.Driver, handle string) []string {
	t.Helper()
	resp, err := d.ControllerClient().ListVolumes(e.ctx, &csi.ListVolumesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, entry := range resp.GetEntries() {
		if entry.GetVolume().GetVolumeId() == handle {
			return entry.GetStatus().GetPublishedNodeIds()
		}
	}
	t.Fatalf("plugin does not list volume %s", handle)
	return nil
}
