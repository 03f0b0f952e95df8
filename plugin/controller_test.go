package plugin_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/csi-hub/csi-hub/plugin/plugintest"
	"github.com/csi-hub/csi-hub/plugin/transport/loop"
)

const mib = int64(1) << 20

func mountCap() *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: "ext4"}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
}

func blockCap() *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
}

func createReq(name string, size int64, params map[string]string) *csi.CreateVolumeRequest {
	return &csi.CreateVolumeRequest{Name: name, CapacityRange: &csi.CapacityRange{RequiredBytes: size},
		VolumeCapabilities: []*csi.VolumeCapability{mountCap(), blockCap()}, Parameters: params}
}

func mustCreate(t *testing.T, cc csi.ControllerClient, req *csi.CreateVolumeRequest) *csi.Volume {
	t.Helper()
	resp, err := cc.CreateVolume(context.Background(), req)
	if err != nil {
		t.Fatalf("CreateVolume %s: %v", req.GetName(), err)
	}
	return resp.GetVolume()
}

func wantCode(t *testing.T, err error, code codes.Code, field string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != code {
		t.Fatalf("got %v, want code %v", err, code)
	}
	if field != "" && !strings.Contains(st.Message(), field) {
		t.Fatalf("message %q does not name %q", st.Message(), field)
	}
}

func TestCreateDeleteVolumeLifecycle(t *testing.T) {
	d := plugintest.Start(t, plugintest.Options{})
	cc := d.ControllerClient()
	ctx := context.Background()

	resp, err := cc.CreateVolume(ctx, createReq("pvc-1", 10*mib, map[string]string{"type": "thick", "tier": "gold", "csi.storage.k8s.io/pvc/name": "x"}))
	if err != nil {
		t.Fatal(err)
	}
	v := resp.GetVolume()
	if v.GetCapacityBytes() != 10*mib || v.GetVolumeContext()["tier"] != "gold" || v.GetVolumeContext()["type"] != "thick" {
		t.Fatalf("unexpected volume %v", v)
	}
	if _, ok := v.GetVolumeContext()["csi.storage.k8s.io/pvc/name"]; ok {
		t.Fatalf("reserved key leaked into volume context: %v", v.GetVolumeContext())
	}
	if seg := v.GetAccessibleTopology()[0].GetSegments(); seg["topology.block.csi-hub.io/node"] != d.NodeID {
		t.Fatalf("topology %v", seg)
	}
	path := d.PoolDir + "/" + v.GetVolumeId() + ".img"
	fi, err := os.Stat(path)
	if err != nil || fi.Size() != 10*mib {
		t.Fatalf("backing file: %v %v", fi, err)
	}

	again, err := cc.CreateVolume(ctx, createReq("pvc-1", 10*mib, map[string]string{"type": "thick", "tier": "gold"}))
	if err != nil || again.GetVolume().GetVolumeId() != v.GetVolumeId() {
		t.Fatalf("repeated create: %v %v", again, err)
	}
	_, err = cc.CreateVolume(ctx, createReq("pvc-1", 20*mib, map[string]string{"type": "thick", "tier": "gold"}))
	wantCode(t, err, codes.AlreadyExists, "capacity_range")

	pub, err := cc.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: v.GetVolumeId(), NodeId: d.NodeID, VolumeCapability: mountCap()})
	if err != nil {
		t.Fatal(err)
	}
	if pub.GetPublishContext()[loop.KeyBackingFile] != path || pub.GetPublishContext()["transport"] != "loop" || pub.GetPublishContext()["volumeID"] != v.GetVolumeId() {
		t.Fatalf("publish context %v", pub.GetPublishContext())
	}
	_, err = cc.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: v.GetVolumeId()})
	wantCode(t, err, codes.FailedPrecondition, "published")
	got, err := cc.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: v.GetVolumeId()})
	if err != nil || len(got.GetStatus().GetPublishedNodeIds()) != 1 {
		t.Fatalf("get volume: %v %v", got, err)
	}
	if _, err := cc.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: v.GetVolumeId(), NodeId: d.NodeID}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := cc.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: v.GetVolumeId()}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("backing file still there: %v", err)
	}
}
