package fakedriver

import (
	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// CapVolumeCondition is VOLUME_CONDITION (11) of CSI 1.3-1.12; CSI 1.13
// reserved the number. Put it in Options.ControllerCapabilities to make the
// driver behave as one built on the older spec: ListVolumes and
// ControllerGetVolume then carry each volume's condition (set with
// SetVolumeCondition) in VolumeStatus field 2, where the older spec had
// volume_condition.
const CapVolumeCondition csi.ControllerServiceCapability_RPC_Type = 11

type volumeCondition struct {
	abnormal bool
	message  string
}

// SetVolumeCondition sets what the driver reports as the volume's condition
// (only with CapVolumeCondition). Volumes never set are reported normal.
func (d *Driver) SetVolumeCondition(id string, abnormal bool, message string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conditions == nil {
		d.conditions = map[string]volumeCondition{}
	}
	d.conditions[id] = volumeCondition{abnormal, message}
}

// addLegacyCondition writes the volume's condition into status as the
// pre-1.13 field 2 {bool abnormal = 1; string message = 2}. d.mu is held.
func (d *Driver) addLegacyCondition(status proto.Message, id string) {
	if !d.controllerOn[CapVolumeCondition] {
		return
	}
	c := d.conditions[id]
	var inner []byte
	inner = protowire.AppendTag(inner, 1, protowire.VarintType)
	inner = protowire.AppendVarint(inner, protowire.EncodeBool(c.abnormal))
	inner = protowire.AppendTag(inner, 2, protowire.BytesType)
	inner = protowire.AppendString(inner, c.message)
	raw := protowire.AppendTag(nil, 2, protowire.BytesType)
	raw = protowire.AppendBytes(raw, inner)
	m := status.ProtoReflect()
	m.SetUnknown(append(m.GetUnknown(), raw...))
}
