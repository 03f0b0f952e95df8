package healthmonitor

import (
	"context"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// CapVolumeCondition is VOLUME_CONDITION (11) of CSI 1.3-1.12, which CSI 1.13
// removed (the number is reserved) in favour of GET_VOLUME_HEALTH (16) and
// LIST_VOLUME_HEALTH (17). Drivers built on the older spec still send it,
// with the condition in field 2 of ListVolumes' and ControllerGetVolume's
// VolumeStatus (also reserved now), so it is read from the unknown fields.
const CapVolumeCondition csi.ControllerServiceCapability_RPC_Type = 11

// condition is one volume's health as the monitor reports it.
type condition struct {
	abnormal bool
	message  string
}

// mode is how conditions are read from the driver, chosen by capability.
type mode int

const (
	modeNone       mode = iota
	modeListHealth      // ControllerListVolumeHealth (LIST_VOLUME_HEALTH)
	modeGetHealth       // ControllerGetVolumeHealth per volume (GET_VOLUME_HEALTH)
	modeListLegacy      // ListVolumes' volume_condition (VOLUME_CONDITION + LIST_VOLUMES)
	modeGetLegacy       // ControllerGetVolume's volume_condition (VOLUME_CONDITION + GET_VOLUME)
)

func (m mode) String() string {
	return [...]string{"none", "ControllerListVolumeHealth", "ControllerGetVolumeHealth", "ListVolumes", "ControllerGetVolume"}[m]
}

func (m mode) lists() bool { return m == modeListHealth || m == modeListLegacy }

// chooseMode prefers a list call (one call per page instead of one per
// volume), as the sidecar prefers ListVolumes.
func chooseMode(has func(csi.ControllerServiceCapability_RPC_Type) bool) mode {
	switch {
	case has(csi.ControllerServiceCapability_RPC_LIST_VOLUME_HEALTH):
		return modeListHealth
	case has(csi.ControllerServiceCapability_RPC_GET_VOLUME_HEALTH):
		return modeGetHealth
	case has(CapVolumeCondition) && has(csi.ControllerServiceCapability_RPC_LIST_VOLUMES):
		return modeListLegacy
	case has(CapVolumeCondition) && has(csi.ControllerServiceCapability_RPC_GET_VOLUME):
		return modeGetLegacy
	}
	return modeNone
}

// Capable reports whether the driver's controller capabilities let the
// health monitor read volume conditions.
func Capable(has func(csi.ControllerServiceCapability_RPC_Type) bool) bool {
	return chooseMode(has) != modeNone
}

// fromHealth turns CSI 1.13's VolumeHealth into a condition: any entry is
// abnormal; the message joins the entries' messages (reason when empty).
func fromHealth(h *csi.VolumeHealth) condition {
	var msgs []string
	for _, e := range h.GetHealthStatuses() {
		m := e.GetMessage()
		if m == "" {
			m = e.GetReason()
		}
		if m == "" {
			m = e.GetStatus().String()
		}
		msgs = append(msgs, m)
	}
	return condition{abnormal: len(msgs) > 0, message: strings.Join(msgs, "; ")}
}

// legacyCondition reads the pre-1.13 VolumeCondition (field 2 of the
// VolumeStatus message: abnormal = 1, message = 2) from status's unknown
// fields; ok is false when the driver sent none.
func legacyCondition(status proto.Message) (c condition, ok bool) {
	if status == nil || !status.ProtoReflect().IsValid() {
		return c, false
	}
	raw := status.ProtoReflect().GetUnknown()
	for len(raw) > 0 {
		num, typ, n := protowire.ConsumeTag(raw)
		if n < 0 {
			return c, false
		}
		raw = raw[n:]
		if num == 2 && typ == protowire.BytesType {
			body, m := protowire.ConsumeBytes(raw)
			if m < 0 {
				return c, false
			}
			c, ok = parseVolumeCondition(body), true
			raw = raw[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, raw)
		if m < 0 {
			return c, false
		}
		raw = raw[m:]
	}
	return c, ok
}

func parseVolumeCondition(b []byte) condition {
	var c condition
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return c
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.VarintType:
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return c
			}
			c.abnormal, b = v != 0, b[m:]
		case num == 2 && typ == protowire.BytesType:
			v, m := protowire.ConsumeString(b)
			if m < 0 {
				return c
			}
			c.message, b = v, b[m:]
		default:
			m := protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				return c
			}
			b = b[m:]
		}
	}
	return c
}

// listConditions reads every volume's condition, page by page.
func listConditions(ctx context.Context, cc csi.ControllerClient, m mode) (map[string]condition, error) {
	out := map[string]condition{}
	token := ""
	for {
		var next string
		switch m {
		case modeListHealth:
			resp, err := cc.ControllerListVolumeHealth(ctx, &csi.ControllerListVolumeHealthRequest{StartingToken: token})
			if err != nil {
				return nil, err
			}
			for _, e := range resp.GetEntries() {
				out[e.GetVolumeId()] = fromHealth(e)
			}
			next = resp.GetNextToken()
		default:
			resp, err := cc.ListVolumes(ctx, &csi.ListVolumesRequest{StartingToken: token})
			if err != nil {
				return nil, err
			}
			for _, e := range resp.GetEntries() {
				if c, ok := legacyCondition(e.GetStatus()); ok {
					out[e.GetVolume().GetVolumeId()] = c
				}
			}
			next = resp.GetNextToken()
		}
		if next == "" || next == token {
			return out, nil
		}
		token = next
	}
}

// getCondition reads one volume's condition; ok is false when the driver
// reported none.
func getCondition(ctx context.Context, cc csi.ControllerClient, m mode, id string) (condition, bool, error) {
	if m == modeGetHealth {
		resp, err := cc.ControllerGetVolumeHealth(ctx, &csi.ControllerGetVolumeHealthRequest{VolumeId: id})
		if err != nil {
			return condition{}, false, err
		}
		return fromHealth(resp.GetVolumeHealth()), true, nil
	}
	resp, err := cc.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: id})
	if err != nil {
		return condition{}, false, err
	}
	c, ok := legacyCondition(resp.GetStatus())
	return c, ok, nil
}
