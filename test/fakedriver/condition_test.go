package fakedriver

import (
	"context"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// With CapVolumeCondition the driver plays one built on CSI < 1.13: the
// condition travels over the wire as VolumeStatus field 2 of ListVolumes and
// ControllerGetVolume, which a 1.13 client keeps as unknown bytes.
func TestLegacyVolumeConditionOverTheWire(t *testing.T) {
	d, c := startDriver(t, Options{ControllerCapabilities: []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME, csi.ControllerServiceCapability_RPC_LIST_VOLUMES,
		csi.ControllerServiceCapability_RPC_GET_VOLUME, CapVolumeCondition}})
	ctx := context.Background()
	id, err := d.AddVolume(Volume{Name: "v", CapacityBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	caps, err := c.ctrl.ControllerGetCapabilities(ctx, &csi.ControllerGetCapabilitiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, cp := range caps.GetCapabilities() {
		found = found || cp.GetRpc().GetType() == CapVolumeCondition
	}
	if !found {
		t.Fatalf("capability 11 not advertised: %v", caps)
	}
	check := func(abnormal bool, msg string) {
		t.Helper()
		list, err := c.ctrl.ListVolumes(ctx, &csi.ListVolumesRequest{})
		if err != nil || len(list.GetEntries()) != 1 {
			t.Fatalf("ListVolumes = %v, %v", list, err)
		}
		get, err := c.ctrl.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: id})
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range []proto.Message{list.GetEntries()[0].GetStatus(), get.GetStatus()} {
			gotAbnormal, gotMsg := decodeLegacy(t, st)
			if gotAbnormal != abnormal || gotMsg != msg {
				t.Errorf("condition = %v %q, want %v %q", gotAbnormal, gotMsg, abnormal, msg)
			}
		}
	}
	check(false, "")
	d.SetVolumeCondition(id, true, "path lost")
	check(true, "path lost")
}

func decodeLegacy(t *testing.T, st proto.Message) (bool, string) {
	t.Helper()
	raw := st.ProtoReflect().GetUnknown()
	num, typ, n := protowire.ConsumeTag(raw)
	if num != 2 || typ != protowire.BytesType || n < 0 {
		t.Fatalf("unknown fields %x: want field 2", raw)
	}
	body, _ := protowire.ConsumeBytes(raw[n:])
	var abnormal bool
	var msg string
	for len(body) > 0 {
		num, typ, n := protowire.ConsumeTag(body)
		body = body[n:]
		switch {
		case num == 1 && typ == protowire.VarintType:
			v, m := protowire.ConsumeVarint(body)
			abnormal, body = v != 0, body[m:]
		case num == 2 && typ == protowire.BytesType:
			v, m := protowire.ConsumeString(body)
			msg, body = v, body[m:]
		default:
			t.Fatalf("unexpected field %d", num)
		}
	}
	return abnormal, msg
}
