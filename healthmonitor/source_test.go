package healthmonitor

import (
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/protobuf/encoding/protowire"
)

// The capability decides how conditions are read; a list call is preferred,
// and VOLUME_CONDITION (the pre-1.13 number) alone is not enough.
func TestChooseMode(t *testing.T) {
	const (
		list    = csi.ControllerServiceCapability_RPC_LIST_VOLUMES
		get     = csi.ControllerServiceCapability_RPC_GET_VOLUME
		health  = csi.ControllerServiceCapability_RPC_GET_VOLUME_HEALTH
		lhealth = csi.ControllerServiceCapability_RPC_LIST_VOLUME_HEALTH
	)
	for _, tc := range []struct {
		caps []csi.ControllerServiceCapability_RPC_Type
		want mode
	}{
		{[]csi.ControllerServiceCapability_RPC_Type{health, lhealth, list}, modeListHealth},
		{[]csi.ControllerServiceCapability_RPC_Type{health, list, get}, modeGetHealth},
		{[]csi.ControllerServiceCapability_RPC_Type{CapVolumeCondition, list, get}, modeListLegacy},
		{[]csi.ControllerServiceCapability_RPC_Type{CapVolumeCondition, get}, modeGetLegacy},
		{[]csi.ControllerServiceCapability_RPC_Type{CapVolumeCondition}, modeNone},
		{[]csi.ControllerServiceCapability_RPC_Type{list, get}, modeNone},
	} {
		has := func(c csi.ControllerServiceCapability_RPC_Type) bool {
			for _, x := range tc.caps {
				if x == c {
					return true
				}
			}
			return false
		}
		if got := chooseMode(has); got != tc.want {
			t.Errorf("caps %v: mode %s, want %s", tc.caps, got, tc.want)
		}
	}
}

// A driver built on CSI 1.12 sends volume_condition as field 2 of
// VolumeStatus; the 1.13 types keep it as unknown bytes, which are read.
func TestLegacyCondition(t *testing.T) {
	var inner []byte
	inner = protowire.AppendTag(inner, 1, protowire.VarintType)
	inner = protowire.AppendVarint(inner, 1)
	inner = protowire.AppendTag(inner, 2, protowire.BytesType)
	inner = protowire.AppendString(inner, "disk gone")
	raw := protowire.AppendTag(nil, 2, protowire.BytesType)
	raw = protowire.AppendBytes(raw, inner)
	st := &csi.ListVolumesResponse_VolumeStatus{PublishedNodeIds: []string{"n1"}}
	st.ProtoReflect().SetUnknown(raw)
	c, ok := legacyCondition(st)
	if !ok || !c.abnormal || c.message != "disk gone" {
		t.Errorf("legacyCondition = %+v, %v; want abnormal \"disk gone\"", c, ok)
	}
	if _, ok := legacyCondition(&csi.ListVolumesResponse_VolumeStatus{}); ok {
		t.Error("a status without the field reports a condition")
	}
	if _, ok := legacyCondition((*csi.ListVolumesResponse_VolumeStatus)(nil)); ok {
		t.Error("a nil status reports a condition")
	}
}

func TestFromHealth(t *testing.T) {
	if c := fromHealth(&csi.VolumeHealth{VolumeId: "v"}); c.abnormal {
		t.Errorf("no entries = %+v, want normal", c)
	}
	c := fromHealth(&csi.VolumeHealth{HealthStatuses: []*csi.VolumeHealth_VolumeHealthEntry{
		{Status: csi.VolumeHealthErrorType_DATA_LOSS, Reason: "BackingFileMissing", Message: "backing file x is missing"},
		{Status: csi.VolumeHealthErrorType_DEGRADED, Reason: "Slow"},
	}})
	if !c.abnormal || c.message != "backing file x is missing; Slow" {
		t.Errorf("fromHealth = %+v", c)
	}
}
